"""CPU instructions per operation, counted by valgrind's callgrind: a figure a noisy machine does not move.

Wall-clock figures on these machines move by +-30 % between runs and by 2-3x between days
(bench/RESULTS.md), which hides a 10 % change. The instructions that the same code runs on
the same data are the same count on a quiet or a busy machine. Counted in process, each
beside the baseline its wall-clock benchmark uses:
- a page of each API list on bench-surfaces' data (30,000 rows a table, PostgreSQL)
  through Django's whole request handling, beside the plain view's page;
- a decision through the three layers on bench-decide's data, an execution (fills and
  booking of an approved arbitrage, bench-execute's data and preset), and a decision that
  books its execution in the same transaction as the `decide` task does (bench-execute's
  data and preset), each beside the bare locked transaction.
Only this process is counted (Django, DRF, psycopg, the desk's code), not PostgreSQL's
work nor the time spent waiting for it. Each operation runs in a child process under
callgrind with instrumentation off until it is set up and warm; the parent switches it on
for the measured operations only (`callgrind_control`). Informative: the issues' targets
are wall-clock ones (make bench-surfaces, make bench-decide).

Results: bench/results/instructions.json.
"""
import os
import re
import shutil
import subprocess
import sys

from common import ROOT, metric, postgres_ready, write_results

LISTS_DB, DECIDE_DB, EXECUTE_DB = "trifecta_bench_lists", "trifecta_bench_decisions", "trifecta_bench_executions"
PAGES, DECISIONS, EXECUTIONS, WARM_UP = 30, 200, 200, 5
LISTS = {"plain": "/plain/opportunities/", "opportunities": "/api/opportunities/", "decisions": "/api/decisions/",
         "trades": "/api/trades/", "scans": "/api/scans/"}


def database_url(name: str) -> str:
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def seed_lists() -> None:
    import surfaces

    surfaces.ENV["DATABASE_URL"] = database_url(LISTS_DB)
    print(surfaces.setup())


def seed_decisions() -> None:
    import decide

    decide.setup_django(database_url(DECIDE_DB))
    decide.prepare(database_url(DECIDE_DB), WARM_UP + DECISIONS)


def seed_executions() -> None:
    import execute

    execute.URL = database_url(EXECUTE_DB)
    execute.setup()
    from decimal import Decimal as D

    from decisions.models import Decision
    from scanners.models import Opportunity

    # approved on one route, as the desk trades the same routes again and again
    opportunities = Opportunity.objects.bulk_create(execute.opportunity(0) for _ in range(WARM_UP + EXECUTIONS))
    Decision.objects.bulk_create(
        Decision(opportunity=o, layer=layer, verdict=verdict, size_usd=D("3.7"), decided_at=o.detected_at, market_ts=execute.T0)
        for o in opportunities for layer, verdict in (("agent", "approve"), ("risk", "approved"), ("governor", "execute")))
    execute.created(WARM_UP + EXECUTIONS)  # undecided, each on a route of its own (bench-execute's), for `decide --execute`


def page_reader(path: str):
    import surfaces

    os.environ.update({**{k: surfaces.ENV[k] for k in ("REDIS_URL", "LOG_LEVEL", "DEBUG", "API_USER_RATE")},
                       "DATABASE_URL": database_url(LISTS_DB), "DJANGO_SETTINGS_MODULE": "bench_settings"})
    import django

    django.setup()
    from django.test import Client
    from rest_framework.authtoken.models import Token

    client = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.get().key}", HTTP_HOST="127.0.0.1")
    pages = iter(range(10**6))

    def read():
        response = client.get(path, {"page": next(pages) % 20 + 1})
        assert response.status_code == 200, response.content[:300]
    return read


def decider(mode: str):
    import decide

    decide.setup_django(database_url(DECIDE_DB))
    from django.db import transaction
    from django.utils import timezone

    from decisions.models import Decision, RiskDay, RiskState
    from execution.deciding import decide_opportunity
    from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed
    from scanners.models import Opportunity
    from trifecta_site.models import ConfigChange

    Decision.objects.all().delete()
    RiskDay.objects.all().delete()
    Opportunity.objects.update(status=Opportunity.DETECTED)
    reader = RecordingReader(decide.RECORDING)
    feed = ReplayFeed(reader, ReplayClock.stepped(reader.end))
    RiskState.get_solo()
    ids, now = iter(Opportunity.objects.order_by("pk").values_list("pk", flat=True)), timezone.now()

    def bare():  # bench-decide's baseline
        with transaction.atomic():
            RiskState.objects.select_for_update(no_key=True, of=("self",)).get(pk=1)
            ConfigChange.objects.create(setting="bench", field="f", changed_at=now)

    return bare if mode == "baseline" else (lambda: decide_opportunity(opportunity_id=next(ids), feed=feed))


def executor(mode: str):
    """An execution of an approved opportunity on its own, or (`booked`) a decision that books it
    in the same transaction, as the `decide` task does (`decide_opportunity(execute=True)`)."""
    import decide
    import execute

    os.environ.update(TRIFECTA_FEED="replay", TRIFECTA_RECORDING=str(execute.RECORDING))
    decide.setup_django(database_url(EXECUTE_DB))
    from execution.deciding import decide_opportunity
    from execution.deciding import execute_opportunity
    from scanners.feeds import desk_feed
    from scanners.models import Opportunity

    waiting = Opportunity.objects.filter(status=Opportunity.DETECTED)
    waiting = waiting.filter(decisions__isnull=True) if mode == "booked" else waiting.filter(decisions__layer="governor")
    ids = iter(waiting.order_by("pk").values_list("pk", flat=True))
    if mode == "booked":
        return lambda: decide_opportunity(opportunity_id=next(ids), feed=desk_feed(), execute=True)
    return lambda: execute_opportunity(opportunity_id=next(ids), feed=desk_feed())


def child(what: str, arg: str, count: int) -> None:
    """Set up, warm up, then wait to be counted: the parent switches instrumentation on around `count` operations."""
    step = page_reader(arg) if what == "page" else executor(arg) if what == "execute" else decider(arg)
    from trifecta_site.celery import freeze_startup_objects

    for _ in range(WARM_UP):
        step()
    freeze_startup_objects()  # as the desk's worker processes do once set up
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(count):
        step()
    print("done", flush=True)
    sys.stdin.readline()


def counted(what: str, arg: str, count: int) -> float:
    """Instructions per operation of `count` operations in a child under callgrind."""
    process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=/dev/null",
         sys.executable, __file__, "--child", what, arg, str(count)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT / "bench")
    try:
        for expected, switch in (("ready", "on"), ("done", "off")):
            line = process.stdout.readline().strip()
            if line != expected:
                raise RuntimeError(f"{what} {arg}: expected {expected!r}, got {line!r}\n{process.stderr.read()[-3000:]}")
            subprocess.run(["callgrind_control", "-i", switch, str(process.pid)], check=True, capture_output=True)
            process.stdin.write("go\n")
            process.stdin.flush()
        _, errors = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    collected = re.search(r"Collected : (\d+)", errors)
    if process.returncode or collected is None:
        raise RuntimeError(f"{what} {arg}: exit {process.returncode}\n{errors[-3000:]}")
    return int(collected.group(1)) / count


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    if sys.argv[1:2] == ["--seed"]:
        {"lists": seed_lists, "decisions": seed_decisions, "executions": seed_executions}[sys.argv[2]]()
        return
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        sys.exit("bench-instructions needs valgrind (apt-get install valgrind)")
    if not all(postgres_ready(name) for name in (LISTS_DB, DECIDE_DB, EXECUTE_DB)):
        sys.exit("bench-instructions needs the machine's PostgreSQL")
    for data in ("lists", "decisions", "executions"):
        subprocess.run([sys.executable, __file__, "--seed", data], check=True, cwd=ROOT / "bench",
                       capture_output=True)
    pages = {name: counted("page", path, PAGES) for name, path in LISTS.items()}
    informative = "none (informative: the same code on the same data counts the same on any day)"
    metrics = {f"api_{name}_instructions_per_page": metric(pages[name], "instructions", pages["plain"], informative, True)
               for name in LISTS if name != "plain"}
    bare, decision = counted("decide", "baseline", DECISIONS), counted("decide", "pipeline", DECISIONS)
    metrics["decision_instructions"] = metric(decision, "instructions", bare, informative, True)
    metrics["execution_instructions"] = metric(counted("execute", "alone", EXECUTIONS), "instructions", bare, informative, True)
    metrics["decision_booking_execution_instructions"] = metric(counted("execute", "booked", EXECUTIONS), "instructions",
                                                                bare, informative, True)
    write_results("instructions", metrics)


if __name__ == "__main__":
    main()
