from django.db import models
from django.utils import timezone


class Heartbeat(models.Model):
    """Last sign of life of one desk process, read by the health endpoint.

    The worker's row is written by the beat-scheduled `heartbeat` task it runs; beat's
    row is written by beat itself on its scheduler tick, so a dead beat and a dead
    worker can be told apart.
    """

    WORKER = "worker"
    BEAT = "beat"

    process = models.CharField(max_length=16, choices=[(WORKER, "worker"), (BEAT, "beat")])
    hostname = models.CharField(max_length=200)
    seen_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["process", "hostname"], name="one_heartbeat_per_process")]

    def __str__(self):
        return f"{self.process}@{self.hostname} {self.seen_at:%Y-%m-%d %H:%M:%S}"

    @classmethod
    def record(cls, *, process: str, hostname: str) -> None:
        cls.objects.update_or_create(process=process, hostname=hostname, defaults={"seen_at": timezone.now()})

    @classmethod
    def latest(cls, process: str):
        return cls.objects.filter(process=process).order_by("-seen_at").values_list("seen_at", flat=True).first()
