from __future__ import annotations

import contextlib
import contextvars
import copy
import secrets
from dataclasses import dataclass

from django.db import models
from django.db.models import Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone



class Heartbeat(models.Model):
    """Last sign of life of one desk process, read by the health endpoint.

    The worker's row is written by the beat-scheduled `heartbeat` task it runs; beat's
    row is written by beat itself on its scheduler tick, so a dead beat and a dead
    worker can be told apart.
    """

    WORKER = "worker"
    BEAT = "beat"
    PROBE = "probe"  # a round trip through the desk queue (`probe` task), e.g. the execute benchmark's baseline

    process = models.CharField(max_length=16, choices=[(WORKER, "worker"), (BEAT, "beat"), (PROBE, "probe")])
    hostname = models.CharField(max_length=200)
    seen_at = models.DateTimeField()

    class Meta:
        verbose_name = "heartbeat"
        constraints = [models.UniqueConstraint(fields=["process", "hostname"], name="one_heartbeat_per_process")]

    def __str__(self):
        return f"{self.process}@{self.hostname} {self.seen_at:%Y-%m-%d %H:%M:%S}"

    @classmethod
    def record(cls, *, process: str, hostname: str) -> None:
        cls.objects.update_or_create(process=process, hostname=hostname, defaults={"seen_at": timezone.now()})

    @classmethod
    def latest(cls, process: str):
        return cls.objects.filter(process=process).order_by("-seen_at").values_list("seen_at", flat=True).first()


class ConfigChange(models.Model):
    """One changed field of the desk's configuration: who, when, old value, new value."""

    setting = models.CharField(max_length=100, help_text="which settings row")
    field = models.CharField(max_length=100)
    old_value = models.TextField(blank=True)
    new_value = models.TextField(blank=True)
    changed_by = models.ForeignKey("auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    changed_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "configuration change"
        ordering = ["-changed_at", "-id"]

    def __str__(self):
        return f"{self.setting}.{self.field}: {self.old_value} → {self.new_value}"


class ConfigurationVersion(models.Model):
    """One row holding a number that every change of configuration replaces, in the change's own transaction.

    Processes keep configuration rows and compare this number before using them: a change
    reaches every process at its next read, and a change rolled back reaches none. The
    number is random, not counted up: one written by a transaction that rolled back can
    never come back, so a copy read inside a transaction may be kept too."""

    version = models.BigIntegerField(default=0)

    def __str__(self):
        return f"configuration version {self.version}"


_settings_rows: dict[object, tuple[int, object]] = {}
_pinned_version: contextvars.ContextVar = contextvars.ContextVar("pinned_configuration_version", default=None)


@dataclass
class PinnedVersion:
    """One reading of the version (`one_configuration_reading`), inside the reading it is nested in."""

    version: int
    outer: PinnedVersion | None = None


def configuration_version() -> int:
    pinned = _pinned_version.get()
    if pinned is not None:
        return pinned.version
    return ConfigurationVersion.objects.filter(pk=1).values_list("version", flat=True).first() or 0


def configuration_version_read():
    """The version as an expression, for a caller that reads it in the same query as its own rows."""
    return Coalesce(Subquery(ConfigurationVersion.objects.filter(pk=1).values("version")[:1]), 0)


@contextlib.contextmanager
def one_configuration_reading(*, version: int | None = None):
    """Inside the block every configuration row is checked against one reading of the version
    (`version`: where the caller read it, `configuration_version_read`): one query instead of
    one per row, and every row from the same configuration."""
    token = _pinned_version.set(PinnedVersion(configuration_version() if version is None else version, _pinned_version.get()))
    try:
        yield
    finally:
        _pinned_version.reset(token)


def forget_settings() -> None:
    """Drop this process's copies of the configuration rows (tests do, between tests)."""
    _settings_rows.clear()


def configuration_changed(**_signal) -> None:
    """A configuration row changed: a new version in the same transaction (this process also forgets at once)."""
    _settings_rows.clear()
    version = secrets.randbits(62) + 1
    ConfigurationVersion.objects.update_or_create(pk=1, defaults={"version": version})
    pinned = _pinned_version.get()
    while pinned is not None:  # every reading pinned here, nested ones too, follows this process's own change:
        pinned.version, pinned = version, pinned.outer  # else rows are kept under two versions, reloaded in turn


def kept_configuration(key, load):
    """What `load()` reads from configuration tables, kept per process until the configuration changes."""
    version = configuration_version()
    kept = _settings_rows.get(key)
    if kept is not None and kept[0] == version:
        return kept[1]
    value = load()
    _settings_rows[key] = (version, value)
    return value


class SingletonSettings(models.Model):
    """One row of settings, edited at runtime; every change of a field is audited (`ConfigChange`).

    Configuration rows (`audited`) are read on every scan and decision, so each process
    keeps a copy and checks one number (`ConfigurationVersion`) instead of reading the
    rows: a save replaces it in its own transaction, and every process reloads at its next
    read. Runtime state (`audited = False`) is always read from the database.
    """

    audited = True

    class Meta:
        abstract = True

    def __str__(self):
        """Admin names the one row by what it is ("Risk limits"), not "RiskLimits object (1)"."""
        return str(self._meta.verbose_name).capitalize()

    def save(self, *args, changed_by=None, **kwargs):
        self.pk = 1
        before = type(self).objects.filter(pk=1).first() if self.audited else None
        super().save(*args, **kwargs)
        if self.audited:
            configuration_changed()
        if before is None:
            return
        now = timezone.now()
        user = changed_by if getattr(changed_by, "is_authenticated", False) else None
        ConfigChange.objects.bulk_create(
            ConfigChange(setting=self._meta.verbose_name, field=field.name, old_value=str(old), new_value=str(new),
                         changed_by=user, changed_at=now)
            for field in self._meta.concrete_fields
            if field.name != "id" and (old := getattr(before, field.attname)) != (new := getattr(self, field.attname))
        )

    @classmethod
    def get_solo(cls):
        """The row (created with its defaults on first use); a copy the caller may change and save."""
        if not cls.audited:
            return cls.row()
        return copy.copy(kept_configuration(cls, cls.row))

    @classmethod
    def row(cls):
        """The row as the database holds it: one created here is read back, so a default of 0.85 is
        0.8500 from its first use on, as every later read gives it (an opportunity's figures too)."""
        row, created = cls.objects.get_or_create(pk=1)
        return cls.objects.get(pk=1) if created else row

    def thresholds(self, thresholds_type):
        """The scanner's thresholds dataclass, with every field this row has taken from the row."""
        import dataclasses

        names = [f.name for f in dataclasses.fields(thresholds_type)]
        return thresholds_type(**{name: self.threshold_value(name) for name in names if hasattr(self, name)})

    def threshold_value(self, name: str):
        return getattr(self, name)
