"""Grid validation: a grid the sweep cannot run is refused before anything is queued, with the key named."""
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from sweeps.grid import MAX_RUNS, GridError, canonical, expand
from sweeps.models import Sweep, SweepRun
from tests.conftest import FIXTURES

RECORDING = FIXTURES / "recordings" / "tiny-xvenue"


@pytest.mark.parametrize(("grid", "message"), [
    ({"limitz": {"max_trades_per_day": [1]}}, "unknown key limitz"),
    ({"limits": {"max_trades_per_day": []}}, "limits.max_trades_per_day is an empty list"),
    ({"limits": {"max_trades_per_day": 5}}, "limits.max_trades_per_day must be a list"),
    ({"limits": {"max_trades": [5]}}, "limits has no field max_trades"),
    ({"thresholds": {"crypto": {"top_n": [1]}}}, "thresholds has no kind crypto"),
    ({"thresholds": {"forex": {"min_confidence": ["high"]}}}, "thresholds.forex.min_confidence"),
    ({"intervals_s": {"forex": [10, 0]}}, "intervals_s.forex must be a positive number"),
    ({"intervals_s": {"options": [10]}}, "intervals_s has no interval options"),
    ({"payouts": {"BTC/USD": ["1.5"]}}, "payouts.BTC/USD"),
    ({"limits": {"max_trades_per_day": [3, 3]}}, "limits.max_trades_per_day lists a value twice"),
    ({}, "must be a JSON object"),
    ([1, 2], "must be a JSON object"),
])
def test_a_bad_grid_is_refused_with_the_key_named(grid, message):
    with pytest.raises(GridError, match=message.replace(".", r"\.")):
        expand(grid)


def test_too_many_combinations_are_refused():
    side = int(MAX_RUNS ** 0.5) + 1
    with pytest.raises(GridError, match=f"{side * side} combinations"):
        expand({"limits": {"max_trades_per_day": list(range(1, side + 1)), "cooldown_minutes": list(range(side))}})


def test_the_runs_are_the_product_of_the_leaves_in_sorted_key_order_over_the_base():
    runs = expand({"thresholds": {"binary": {"auto_min_probability": ["0.75", "0.8"]}},
                   "limits": {"max_trades_per_day": [50, 3]}},
                  base={"limits": {"cooldown_minutes": 5}, "thresholds": {"binary": {"top_n": 2}}})
    assert [combination for combination, _ in runs] == [
        {"limits.max_trades_per_day": 50, "thresholds.binary.auto_min_probability": "0.75"},
        {"limits.max_trades_per_day": 50, "thresholds.binary.auto_min_probability": "0.8"},
        {"limits.max_trades_per_day": 3, "thresholds.binary.auto_min_probability": "0.75"},
        {"limits.max_trades_per_day": 3, "thresholds.binary.auto_min_probability": "0.8"},
    ]
    assert runs[1][1] == {"limits": {"cooldown_minutes": 5, "max_trades_per_day": 50},
                          "thresholds": {"binary": {"top_n": 2, "auto_min_probability": "0.8"}}}
    assert canonical(runs[1][1]) == json.dumps(runs[1][1], sort_keys=True, separators=(",", ":"))


def test_a_value_the_model_refuses_is_named_with_its_combination():
    """The model's own check (`clean`, as admin runs it) sees each whole combination."""
    with pytest.raises(GridError, match=r'thresholds\.binary\.expiries: .*positive expiry .*combination .*"thresholds.binary.top_n":2'):
        expand({"thresholds": {"binary": {"expiries": ["60", "0"], "top_n": [2]}}})


@pytest.mark.django_db
@pytest.mark.parametrize(("grid", "options", "message"), [
    ({"limits": {"max_trades_per_day": []}}, {}, "limits.max_trades_per_day is an empty list"),
    ({"nope": {"x": [1]}}, {}, "unknown key nope"),
    ({"limits": {"max_trades_per_day": [1]}}, {"split": "1.2"}, "--split"),
    ({"limits": {"max_trades_per_day": [1]}}, {"split": "abc"}, "--split"),
])
def test_the_command_refuses_a_bad_grid_and_writes_nothing(tmp_path, grid, options, message):
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(grid))
    with pytest.raises(CommandError, match=message.replace(".", r"\.")):
        call_command("sweep", recording=str(RECORDING), grid=str(path), report=str(tmp_path / "out"), **options)
    assert not Sweep.objects.exists() and not SweepRun.objects.exists()


@pytest.mark.django_db
def test_the_command_names_an_unreadable_grid(tmp_path):
    path = tmp_path / "grid.json"
    path.write_text("{\"limits\": ")
    with pytest.raises(CommandError, match="--grid: .* line 1"):
        call_command("sweep", recording=str(RECORDING), grid=str(path), report=str(tmp_path / "out"))
    with pytest.raises(CommandError, match="no manifest.json"):
        call_command("sweep", recording=str(tmp_path), grid=str(path), report=str(tmp_path / "out"))
