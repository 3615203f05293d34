"""A sweep's stored results: the ranking and its report, cancelling, resuming, and applying a run to the live desk."""
import json
from decimal import Decimal as D

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError

from decisions.models import RiskLimits
from scanners.models import BinaryPayout, ForexSettings
from sweeps import services
from sweeps.models import Sweep, SweepRun
from sweeps.report import build_sweep_report, write_sweep_report
from tests.conftest import FIXTURES
from trifecta_site.models import ConfigChange

pytestmark = pytest.mark.django_db
RECORDING = FIXTURES / "recordings" / "tiny-xvenue"
GRID = {"limits": {"max_trades_per_day": [7, 3, 5]}, "thresholds": {"forex": {"min_confidence": ["0.6", "0.65"]}}}


def part(pnl, dd="0.0000", trades=1):
    return {"pnl": pnl, "max_drawdown_pct": dd, "trades": trades, "wins": 0, "losses": 0, "brier": None, "predictions": 0}


def finish(run, in_pnl, out_pnl, in_dd="0.0000"):
    SweepRun.objects.filter(pk=run.pk).update(status=SweepRun.DONE, in_sample=part(in_pnl, in_dd),
                                              out_of_sample=part(out_pnl), whole=part(str(D(in_pnl) + D(out_pnl))))


def test_a_sweep_has_one_queued_run_per_combination_and_its_split_in_market_time():
    sweep = services.create_sweep(recording=str(RECORDING), grid=GRID, split=D("0.5"), start=0, end=200_000)
    assert sweep.runs.count() == 6 and set(sweep.runs.values_list("status", flat=True)) == {SweepRun.QUEUED}
    assert (sweep.start_ts, sweep.end_ts, sweep.split_ts) == (0, 200_000, 100_000)
    assert sweep.runs.get(index=0).settings == {"limits": {"max_trades_per_day": 7}, "thresholds": {"forex": {"min_confidence": "0.6"}}}


def test_the_ranking_is_by_p_and_l_then_drawdown_then_the_settings_canonical_json(tmp_path):
    sweep = services.create_sweep(recording=str(RECORDING), grid=GRID)
    runs = {(r.settings["limits"]["max_trades_per_day"], r.settings["thresholds"]["forex"]["min_confidence"]): r
            for r in sweep.runs.all()}
    finish(runs[7, "0.6"], "10", "-5")
    finish(runs[3, "0.6"], "10", "4")         # ties with (7, 0.6) and (5, 0.6): canonical JSON decides ("3" < "5" < "7")
    finish(runs[5, "0.6"], "10", "4")
    finish(runs[5, "0.65"], "10", "1", in_dd="2.0000")  # same P&L, deeper drawdown: after the three
    finish(runs[3, "0.65"], "12", "-1")
    SweepRun.objects.filter(pk=runs[7, "0.65"].pk).update(status=SweepRun.FAILED, error="replay exited with code 1")
    report = build_sweep_report(sweep)
    order = [(row["settings"]["limits"]["max_trades_per_day"], row["settings"]["thresholds"]["forex"]["min_confidence"])
             for row in report["ranking"]]
    assert order == [(3, "0.65"), (3, "0.6"), (5, "0.6"), (7, "0.6"), (5, "0.65")]
    assert [row["rank_out_of_sample"] for row in report["ranking"]] == [4, 1, 2, 5, 3]
    assert report["best"] == report["ranking"][0] and not report["complete"]
    assert report["runs"] == {"total": 6, "done": 5, "failed": 1, "cancelled": 0, "running": 0, "queued": 0}
    assert report["not_done"] == [{"combination": runs[7, "0.65"].combination, "status": "failed",
                                   "error": "replay exited with code 1"}]
    first = write_sweep_report(report, tmp_path / "a")
    again = write_sweep_report(build_sweep_report(sweep), tmp_path / "b")
    assert first[0].read_bytes() == again[0].read_bytes()
    page = first[1].read_text()
    assert "<svg" in page and page.count("<circle") == 5 and "Partial report" in page


def test_cancelling_leaves_what_finished_or_runs_and_a_worker_skips_a_cancelled_run():
    sweep = services.create_sweep(recording=str(RECORDING), grid=GRID)
    runs = list(sweep.runs.order_by("index"))
    SweepRun.objects.filter(pk=runs[0].pk).update(task_id="t0")
    SweepRun.objects.filter(pk=runs[1].pk).update(task_id="t1", status=SweepRun.RUNNING)
    finish(runs[2], "1", "1")
    SweepRun.objects.filter(pk=runs[3].pk).update(task_id="t3")
    assert sorted(services.revoke_queued(sweep=sweep)) == ["t0", "t3"]
    statuses = dict(sweep.runs.values_list("index", "status"))
    assert statuses == {0: "cancelled", 1: "running", 2: "done", 3: "cancelled", 4: "cancelled", 5: "cancelled"}
    assert Sweep.objects.get(pk=sweep.pk).status == Sweep.CANCELLED
    assert services.replay_sweep_run(run_id=runs[0].pk, worker="w") == "skipped"
    assert services.replay_sweep_run(run_id=runs[2].pk, worker="w") == "skipped"  # a redelivered finished run
    assert SweepRun.objects.get(pk=runs[0].pk).attempts == 0


@pytest.fixture
def operator():
    return get_user_model().objects.create_superuser("operator", password="pw-for-tests-1")


def done_run(settings):
    sweep = services.create_sweep(recording=str(RECORDING), grid={"limits": {"max_trades_per_day": [4]}},
                                  base={key: value for key, value in settings.items() if key != "limits"})
    run = sweep.runs.get()
    finish(run, "5", "2")
    return SweepRun.objects.get(pk=run.pk)


def test_applying_a_run_changes_the_live_settings_and_audits_every_change(operator):
    RiskLimits.get_solo()
    ForexSettings.get_solo()
    run = done_run({"thresholds": {"forex": {"min_confidence": "0.65"}}, "payouts": {"BTC/USD": "0.8"}})
    written = services.apply_run_settings(run=run, user=operator)
    assert RiskLimits.get_solo().max_trades_per_day == 4 and ForexSettings.get_solo().min_confidence == D("0.65")
    assert BinaryPayout.objects.get(symbol="BTC/USD").payout == D("0.8")
    changes = {(c.setting, c.field): (c.old_value, c.new_value) for c in ConfigChange.objects.filter(changed_by=operator)}
    assert written == len(changes) == 4
    assert changes[("risk limits", "max_trades_per_day")] == ("50", "4")
    assert changes[("binary payout", "BTC/USD")] == ("", "0.8")
    assert changes[("sweep", "applied")][1].startswith(f"sweep {run.sweep_id} run 0: ")
    assert {setting for setting, _ in changes} >= {"risk limits", "binary payout", "sweep"}


def test_a_run_not_finished_is_not_applied(operator):
    run = done_run({})
    SweepRun.objects.filter(pk=run.pk).update(status=SweepRun.RUNNING)
    with pytest.raises(services.NotApplicable, match="only a finished run"):
        services.apply_run_settings(run=SweepRun.objects.get(pk=run.pk), user=operator)
    assert not ConfigChange.objects.exists()


def test_admin_applies_one_run_for_whoever_may_change_the_settings(client, operator):
    run = done_run({})
    url = "/admin/sweeps/sweeprun/"
    viewer = get_user_model().objects.create_user("viewer", password="pw-for-tests-2", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_sweeprun"))
    client.force_login(viewer)
    assert "apply_to_live_desk" not in client.get(url).content.decode()
    response = client.post(url, {"action": "apply_to_live_desk", "_selected_action": [run.pk]})
    assert response.status_code in (200, 302) and not ConfigChange.objects.exists()
    client.force_login(operator)
    response = client.post(url, {"action": "apply_to_live_desk", "_selected_action": [run.pk]}, follow=True)
    assert "Applied sweep" in response.content.decode()
    assert RiskLimits.get_solo().max_trades_per_day == 4
    assert ConfigChange.objects.filter(changed_by=operator, setting="sweep").count() == 1


def test_the_sweeps_page_lists_each_sweep_with_its_best_setting(client, operator):
    run = done_run({})
    client.force_login(operator)
    page = client.get("/sweeps/").content.decode()
    assert f"<td>{run.sweep_id}</td>" in page and "limits.max_trades_per_day=4" in page
    assert f"sweep__id__exact={run.sweep_id}" in page
    assert 'href="/sweeps/"' in client.get("/").content.decode()


def test_resuming_queues_again_every_run_not_done():
    sweep = services.create_sweep(recording=str(RECORDING), grid=GRID)
    runs = list(sweep.runs.order_by("index"))
    finish(runs[0], "1", "1")
    SweepRun.objects.filter(pk=runs[1].pk).update(status=SweepRun.FAILED, error="boom")
    SweepRun.objects.filter(pk=runs[2].pk).update(status=SweepRun.RUNNING, attempts=1)
    services.revoke_queued(sweep=sweep)
    assert services.requeue_unfinished(sweep=sweep) == 5
    assert dict(sweep.runs.values_list("index", "status")) == {0: "done", **{i: "queued" for i in range(1, 6)}}
    assert not sweep.runs.exclude(error="").exists() and Sweep.objects.get(pk=sweep.pk).status == Sweep.RUNNING


def test_the_command_resumes_a_sweep_and_writes_its_report(tmp_path, capsys):
    sweep = services.create_sweep(recording=str(RECORDING), grid={"limits": {"max_trades_per_day": [4, 5]}})
    for run in sweep.runs.all():
        finish(run, "1", "2")
    call_command("sweep", resume=sweep.pk, report=str(tmp_path / "out"))
    assert "2 done before" in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["complete"] and len(report["ranking"]) == 2 and Sweep.objects.get(pk=sweep.pk).status == Sweep.COMPLETE
    with pytest.raises(CommandError, match="there is no sweep 999"):
        call_command("sweep", resume=999, report=str(tmp_path / "out"))
    with pytest.raises(CommandError, match="--recording and --grid are required"):
        call_command("sweep", report=str(tmp_path / "out"))


def test_a_worker_s_replay_stores_its_figures_and_a_failing_one_says_why():
    """The service a replay task calls, with its real child process (its own in-memory database)."""
    sweep = services.create_sweep(recording=str(RECORDING), grid={"limits": {"max_trades_per_day": [4, 5]}})
    first, second = sweep.runs.order_by("index")
    assert services.replay_sweep_run(run_id=first.pk, worker="w1@host") == "done"
    first.refresh_from_db()
    assert (first.status, first.attempts, first.worker) == (SweepRun.DONE, 1, "w1@host")
    assert set(first.in_sample) == {"pnl", "trades", "wins", "losses", "max_drawdown_pct", "brier", "predictions"}
    Sweep.objects.filter(pk=sweep.pk).update(recording=str(RECORDING.parent / "no-such-recording"))
    assert services.replay_sweep_run(run_id=second.pk, worker="w2@host") == "failed"
    second.refresh_from_db()
    assert second.status == SweepRun.FAILED and "replay exited with code 1" in second.error
    assert "no-such-recording" in second.error
