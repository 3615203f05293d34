import socket

from celery import shared_task

from .models import Heartbeat


@shared_task(ignore_result=True, expires=30)
def heartbeat():
    """Proves a desk worker is consuming its queue (beat schedules it)."""
    Heartbeat.record(process=Heartbeat.WORKER, hostname=socket.gethostname())


@shared_task(ignore_result=True)
def probe(name: str):
    """A round trip through the desk queue: enqueue → this committed row (the bare cost of a task)."""
    Heartbeat.record(process=Heartbeat.PROBE, hostname=name)
