"""A sweep (one recording replayed under every combination of a grid of settings) and its runs.

The results live in the database, not in the process that started the sweep: workers on any
host store each replay's figures on its run, a redelivered replay finds its run again, and
the report, the dashboard and admin read them from here.
"""
from django.db import models


class Sweep(models.Model):
    RUNNING, COMPLETE, CANCELLED = "running", "complete", "cancelled"
    STATUSES = [(RUNNING, "running"), (COMPLETE, "complete"), (CANCELLED, "cancelled")]

    recording = models.CharField(max_length=500, help_text="recording directory, the same path on every worker host")
    recording_name = models.CharField(max_length=200)
    start_ts = models.BigIntegerField(help_text="market time the replays start, epoch ms")
    end_ts = models.BigIntegerField(help_text="market time the replays end, epoch ms")
    split = models.DecimalField(max_digits=5, decimal_places=4, help_text="share of the market time that is in-sample")
    split_ts = models.BigIntegerField(help_text="last in-sample market time, epoch ms; out-of-sample after it")
    grid = models.JSONField(help_text="the grid: settings keys, each with a list of values")
    base = models.JSONField(default=dict, blank=True, help_text="settings every run starts from (--settings-file)")
    status = models.CharField(max_length=16, choices=STATUSES, default=RUNNING)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"sweep {self.pk} of {self.recording_name}"


class SweepRun(models.Model):
    """One combination of the grid replayed; its figures in and out of sample once done."""

    QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
    STATUSES = [(QUEUED, "queued"), (RUNNING, "running"), (DONE, "done"), (FAILED, "failed"), (CANCELLED, "cancelled")]

    sweep = models.ForeignKey(Sweep, on_delete=models.CASCADE, related_name="runs")
    index = models.PositiveIntegerField(help_text="position of the combination in the grid's order")
    combination = models.JSONField(help_text="the grid's values for this run, by dotted key")
    settings = models.JSONField(help_text="what the replay ran with: the base with the combination on top")
    settings_key = models.TextField(help_text="the settings as canonical JSON: ties in the ranking are broken by it")
    status = models.CharField(max_length=16, choices=STATUSES, default=QUEUED)
    task_id = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="times a worker started this replay (> 1: redelivered)")
    worker = models.CharField(max_length=200, blank=True, help_text="the worker that ran it last")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    wall_s = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    in_sample = models.JSONField(null=True, blank=True)
    out_of_sample = models.JSONField(null=True, blank=True)
    whole = models.JSONField(null=True, blank=True, help_text="figures over the whole window")

    class Meta:
        ordering = ["sweep_id", "index"]
        constraints = [models.UniqueConstraint(fields=["sweep", "index"], name="one_run_per_combination")]

    def __str__(self):
        return f"sweep {self.sweep_id} run {self.index}"
