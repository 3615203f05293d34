"""`manage.py sweep_replay`: one replay of a sweep, started by the worker that runs it.

It runs in a child process on `trifecta_site.replay_settings` (a private in-memory database,
as `manage.py replay`), applies the run's settings file as `replay --settings-file` does and
writes report.json only: the worker reads its figures, nobody reads a page of each run.
"""
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from execution.management.commands.replay import apply_settings, intervals_from, read_settings_file
from execution.replay import Replay
from execution.replay_database import migrated_database
from execution.report import build_report, write_report
from scanners.feeds.base import FeedError
from scanners.feeds.replay import RecordingReader


class Command(BaseCommand):
    help = "One replay of a sweep in this process (a sweep's worker starts it on the replay settings); writes report.json."

    def add_arguments(self, parser):
        parser.add_argument("--recording", required=True)
        parser.add_argument("--from", dest="from_ts", type=int, required=True, help="epoch ms")
        parser.add_argument("--to", dest="to_ts", type=int, required=True, help="epoch ms")
        parser.add_argument("--settings-file", required=True)
        parser.add_argument("--report", required=True, help="directory to write report.json into")

    def handle(self, *args, recording, from_ts, to_ts, settings_file, report, **options):
        if not settings.REPLAY_ISOLATED:
            raise CommandError("sweep_replay runs only on trifecta_site.replay_settings (a sweep's worker starts it)")
        overrides = read_settings_file(settings_file)
        intervals = intervals_from(overrides)
        migrated_database()
        apply_settings(overrides)
        try:
            reader = RecordingReader(recording)
            result = Replay(reader, start=from_ts, end=to_ts, intervals=intervals).run()
        except (FeedError, ValueError) as exc:
            raise CommandError(str(exc))
        write_report(build_report(result=result, recording_name=reader.name), Path(report))
