"""Pages of the REST API's lists: 50 a page (`?page=`), the count kept a moment."""
import functools
import time

from django.conf import settings
from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.utils.functional import cached_property
from rest_framework import pagination

_counts: dict[tuple, tuple[float, int]] = {}


class CountKeepingPaginator(Paginator):
    """Counts each list at most once per LIST_COUNT_MAX_AGE_S in this process.

    Counting a growing table for every page costs more than the page itself, and grows
    with the table; a live list's count is a moment's figure anyway. The rows are always read fresh, and whether a next page exists is decided by
    reading one row more than a page, never by the kept count. `count_key` names the list
    (`ListPagination` says how)."""

    def __init__(self, object_list, per_page, *, count_key):
        super().__init__(object_list, per_page)
        self.count_key = count_key

    @cached_property
    def count(self):
        key, now = self.count_key, time.monotonic()
        kept = _counts.get(key)
        if kept is not None and now - kept[0] < settings.LIST_COUNT_MAX_AGE_S:
            return kept[1]
        if len(_counts) > 1000:
            _counts.clear()
        count = super().count
        _counts[key] = (now, count)
        return count

    def validate_number(self, number):
        """A whole number from 1 (whether its page has rows is known once it is read)."""
        try:
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger("That page number is not an integer")
        if number < 1:
            raise EmptyPage("That page number is less than 1")
        return number

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        if number > 1 and bottom >= self.count:  # past the kept count: is it past the rows as they are now?
            _counts.pop(self.count_key, None)
            self.__dict__.pop("count", None)
            if bottom >= self.count:
                raise EmptyPage("That page contains no results")
        rows = list(self.object_list[bottom:bottom + self.per_page + 1])
        if not rows and number > 1:
            raise EmptyPage("That page contains no results")
        return RowsPage(rows[:self.per_page], number, self, more=len(rows) > self.per_page)


class RowsPage(Page):
    def __init__(self, object_list, number, paginator, *, more: bool):
        super().__init__(object_list, number, paginator)
        self.more = more

    def has_next(self):
        return self.more


def forget_counts() -> None:
    _counts.clear()


def list_filters(request) -> tuple:
    """What a list shows besides its page: its query parameters other than `?page=` (no list
    filters on anything else), in a fixed order."""
    return tuple(sorted((name, tuple(values)) for name, values in request.query_params.lists()
                        if name != ListPagination.page_query_param))


class ListPagination(pagination.PageNumberPagination):
    def paginate_queryset(self, queryset, request, view=None):
        """A list is its path and its query parameters other than the page (the lists filter
        on nothing else), and the reader: cheaper to key on than the query's compiled SQL."""
        self.django_paginator_class = functools.partial(CountKeepingPaginator,
                                                        count_key=(request.path, request.user.pk, list_filters(request)))
        return super().paginate_queryset(queryset, request, view)
