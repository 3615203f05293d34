"""Admin list filters and searches a database cannot run are refused with 400, not a 500.

Admin turns `?decided_at__year=99999999999` into a date Python cannot build and a search
of a thousand words into a WHERE clause deeper than SQLite's limit (1,000); both failed
as 500s while the list rendered, after the view had returned. Checked here, before any
admin view, for every model admin alike (ours, auth's, Celery beat's, axes')."""
from __future__ import annotations

import re

from django.contrib.admin.views.main import SEARCH_VAR
from django.http import HttpResponseBadRequest
from django.urls import reverse
from django.utils.text import smart_split

MAX_SEARCH_WORDS = 50
MAX_SEARCH_CHARS = 1000
# A date part a filter may name, and the values it can have.
DATE_PARTS = {"year": (1, 9999), "iso_year": (1, 9999), "quarter": (1, 4), "month": (1, 12), "week": (1, 53),
              "day": (1, 31), "week_day": (1, 7), "iso_week_day": (1, 7), "hour": (0, 23), "minute": (0, 59),
              "second": (0, 59)}
INTEGER = re.compile(r"-?[0-9]{1,25}")  # longer: out of range anyway (and int() of 4,300 digits raises)
BIGINT = 2**63  # what a database column holds (SQLite cannot even bind more)


def problem(query) -> str | None:
    """What is wrong with an admin page's query string, in words; None when nothing is."""
    search = query.get(SEARCH_VAR, "")
    if len(search) > MAX_SEARCH_CHARS or sum(1 for _ in smart_split(search)) > MAX_SEARCH_WORDS:
        return f"a search may have at most {MAX_SEARCH_WORDS} words and {MAX_SEARCH_CHARS} characters"
    for name, values in query.lists():
        part = name.rsplit("__", 1)[-1]
        for value in values:
            if part in DATE_PARTS and name != part:
                low, high = DATE_PARTS[part]
                if not (INTEGER.fullmatch(value) and low <= int(value) <= high):
                    return f"{name} must be a whole number from {low} to {high}"
            elif re.fullmatch(r"-?[0-9]+", value) and not (INTEGER.fullmatch(value) and -BIGINT <= int(value) < BIGINT):
                return f"{name} is out of range"
    return None


class AdminQueryLimits:
    """Middleware: a 400 naming the parameter for an admin GET whose filters cannot run."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.prefix = None

    def __call__(self, request):
        if self.prefix is None:
            self.prefix = reverse("admin:index")
        if request.method == "GET" and request.path.startswith(self.prefix) and request.GET:
            message = problem(request.GET)
            if message is not None:
                return HttpResponseBadRequest(f"Bad request: {message}.", content_type="text/plain; charset=utf-8")
        return self.get_response(request)
