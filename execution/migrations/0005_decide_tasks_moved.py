"""The decide tasks moved from decisions.tasks to execution.tasks: beat entries already in a
database name the old task, so they are renamed (and back, on reverse)."""
from django.db import migrations

MOVED = {"decisions.tasks.decide_pending": "execution.tasks.decide_pending",
         "decisions.tasks.decide": "execution.tasks.decide"}


def rename(apps, names):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for old, new in names.items():
        PeriodicTask.objects.filter(task=old).update(task=new)


class Migration(migrations.Migration):
    dependencies = [
        ("execution", "0004_readable_names_and_units"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(lambda apps, _: rename(apps, MOVED),
                             lambda apps, _: rename(apps, {new: old for old, new in MOVED.items()})),
    ]
