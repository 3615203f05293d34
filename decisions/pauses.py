"""Pauses: the operator's hold on one pair or one arbitrage route (`Pause`).

The governor reads them on every decision, so each process keeps the pauses in force as
plain values (`active_pauses`, a configuration copy checked against the configuration
version: no query of its own inside `one_configuration_reading`). Creating and lifting
write the audit log (`ConfigChange`, setting "pause") in the same transaction.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from trifecta_site.models import ConfigChange, kept_configuration

from .models import Pause

MAX_MINUTES = 366 * 24 * 60  # a pause for a time is at most a year; longer: until lifted


class PauseAlreadyLifted(Exception):
    """Lifting a pause that was lifted before."""


@dataclass(frozen=True)
class PauseRule:
    """A pause in force, as the governor matches it (`until`: None until lifted)."""

    id: int
    scope: str
    target: str
    until: datetime | None

    def covers(self, opportunity) -> bool:
        """A pair covers every opportunity that trades the symbol on any venue (any leg of an
        arbitrage); a route covers the opportunities of that exact route."""
        if self.scope == Pause.ROUTE:
            return opportunity.route == self.target
        return self.target in markets_of(opportunity)

    def as_figures(self) -> dict:
        return {"id": self.id, "scope": self.scope, "target": self.target,
                "until": None if self.until is None else self.until.isoformat()}


def markets_of(opportunity) -> set[str]:
    """The symbols an opportunity would trade: its own and each leg's."""
    symbols = {opportunity.symbol}
    try:
        symbols |= {symbol for _, symbol in opportunity.legs()}
    except KeyError:  # figures without their legs (a hand-made row): its symbol is what it names
        pass
    return symbols


def _load_rules() -> tuple[PauseRule, ...]:
    now = timezone.now()
    rows = Pause.objects.filter(Q(until__isnull=True) | Q(until__gt=now), lifted_at__isnull=True).order_by("id")
    return tuple(PauseRule(p.pk, p.scope, p.target, p.until) for p in rows)


def active_pauses() -> tuple[PauseRule, ...]:
    """The pauses not lifted and not over when last loaded (their end is checked again at each match)."""
    return kept_configuration(Pause, _load_rules)


def matching_pause(opportunity, pauses: tuple[PauseRule, ...], *, at: datetime) -> PauseRule | None:
    """The first pause in force at `at` (wall clock) that covers the opportunity."""
    for rule in pauses:
        if (rule.until is None or at < rule.until) and rule.covers(opportunity):
            return rule
    return None


def pause_end(*, until: datetime | None = None, minutes: int | None = None, now: datetime | None = None) -> datetime | None:
    """When a pause asked for `until` a moment or for `minutes` ends (None: until lifted)."""
    if minutes is not None:
        return (now or timezone.now()) + timedelta(minutes=minutes)
    return until


def _audit(pause: Pause, *, old: str, new: str, by, at: datetime) -> None:
    ConfigChange.objects.create(setting="pause", field=f"#{pause.pk} {pause.scope} {pause.target}", old_value=old,
                                new_value=new, changed_by=by if getattr(by, "is_authenticated", False) else None,
                                changed_at=at)


def create_pause(*, pause: Pause, by=None) -> Pause:
    """Store a validated, new pause (its creator `by`) and audit it; the governor skips what it
    covers from the next decision on every worker."""
    with transaction.atomic():
        pause.created_by = by if getattr(by, "is_authenticated", False) else None
        pause.created_at = timezone.now()
        pause.save(force_insert=True)
        why = f" ({pause.reason})" if pause.reason else ""
        _audit(pause, old="", new=f"paused {pause.span()}{why}", by=by, at=pause.created_at)
    return pause


def lift_pause(*, pause_id: int, by=None) -> Pause:
    """End a pause now and audit it; raises `Pause.DoesNotExist` or `PauseAlreadyLifted`.
    A pause whose time is over may still be lifted (it says so in the audit)."""
    with transaction.atomic():
        pause = Pause.objects.select_for_update().get(pk=pause_id)
        if pause.lifted_at is not None:
            raise PauseAlreadyLifted(f"pause #{pause.pk} ({pause.scope} {pause.target}) was lifted at "
                                     f"{pause.lifted_at:%Y-%m-%d %H:%M:%S} UTC")
        now = timezone.now()
        before = f"paused {pause.span()}" + ("" if pause.in_force(now) else " (over)")
        pause.lifted_at, pause.lifted_by = now, by if getattr(by, "is_authenticated", False) else None
        pause.save(update_fields=["lifted_at", "lifted_by"])
        _audit(pause, old=before, new="lifted", by=by, at=now)
    return pause
