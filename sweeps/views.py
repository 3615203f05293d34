"""The sweeps page the dashboard links to: recent sweeps and their best settings."""
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET

from .selectors import recent_sweeps


@login_required
@require_GET
def sweep_list(request):
    """For every signed-in desk account, as the dashboard; applying a setting is admin's (its permissions)."""
    return render(request, "sweeps/list.html", {"sweeps": recent_sweeps()})
