"""The desk's default beat schedule, created in the database once.

Operators change intervals in admin (django-celery-beat); `ensure_default_schedule`
only creates missing entries and never overwrites an operator's edit.
"""
from django_celery_beat.models import IntervalSchedule, PeriodicTask

# name -> (task, every seconds)
DEFAULT_SCHEDULE = {
    "desk heartbeat": ("trifecta_site.tasks.heartbeat", 10),
    "poll feeds": ("scanners.tasks.poll_feeds", 5),
    "scan arbitrage": ("scanners.tasks.scan_arbitrage", 5),
    "scan forex": ("scanners.tasks.scan_forex", 10),
    "scan binary": ("scanners.tasks.scan_binary", 5),
    "monitor positions": ("execution.tasks.monitor_positions", 2),
    "decide pending": ("execution.tasks.decide_pending", 30),
    "prune history": ("scanners.tasks.prune_history", 3600),
    "deliver pending notifications": ("notifications.tasks.deliver_pending", 60),
}


def ensure_default_schedule(**_kwargs) -> None:
    for name, (task, seconds) in DEFAULT_SCHEDULE.items():
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
        PeriodicTask.objects.create(name=name, task=task, interval=interval)
