"""The soak of bench/soak.py for 60 s (`make test-reliability`): the whole desk in the
production layout under 100 API and 200 WebSocket clients keeps its promises (memory,
queues, decision latency, no 5xx, no dropped client or event, nothing lost).

`make soak` runs it for 600 s and writes the figures; this short run guards the same
promises in the reliability pass. It needs PostgreSQL, so it runs in the PostgreSQL pass.
"""
import json
import sys

import pytest
from django.db import connection

from tests.conftest import ROOT

sys.path.append(str(ROOT / "bench"))
import soak  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


def test_the_desk_under_a_minute_of_load_keeps_every_promise(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the soak runs the production layout (PostgreSQL): exercised in the PostgreSQL pass")
    figures = soak.soak(60, tmp_path)
    results = soak.verdicts(figures)
    print(f"\nSOAK {json.dumps({k: v['value'] for k, v in results.items()})}")
    missed = {k: v for k, v in results.items() if not v["met"]}
    assert not missed, json.dumps({"missed": missed, "log_problems": figures["log_problems"],
                                   "ledger": figures["ledger"], "api": figures["api"], "ws": figures["ws"]}, indent=1)
