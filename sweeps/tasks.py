"""The replay queue's task: thin, it takes a run's id and calls the service."""
from celery import shared_task

from trifecta_site.celery import app

from . import services
from .models import Sweep, SweepRun


@shared_task(bind=True, ignore_result=True)
def replay_sweep_run(self, run_id: int):
    """One replay of a sweep. Acknowledged late (the desk's setting): a worker killed mid-replay
    leaves the message to be delivered again, and the run is replayed anew."""
    return services.replay_sweep_run(run_id=run_id, worker=self.request.hostname or "")


def queue_runs(*, sweep: Sweep) -> int:
    """Send every queued run of the sweep to the `replay` queue (routed by CELERY_TASK_ROUTES), in order."""
    runs = list(SweepRun.objects.filter(sweep=sweep, status=SweepRun.QUEUED).order_by("index"))
    for run in runs:
        result = replay_sweep_run.apply_async((run.pk,))
        SweepRun.objects.filter(pk=run.pk).update(task_id=result.id)
    return len(runs)


def revoke_queued(*, sweep: Sweep) -> int:
    """Ctrl-C: runs not started are cancelled in the database and their messages revoked."""
    task_ids = services.revoke_queued(sweep=sweep)
    if task_ids:
        app.control.revoke(task_ids)
    return len(task_ids)


def replay_consumers(timeout_s: float = 1.0) -> list[str]:
    """The workers that answer within `timeout_s` and consume the `replay` queue."""
    answers = app.control.inspect(timeout=timeout_s).active_queues() or {}
    return sorted(name for name, queues in answers.items() if any(q.get("name") == "replay" for q in queues))
