"""A sweep's grid: the `--settings-file` keys, each with a list of values; validated and expanded.

Every leaf of the grid is a list of the values to try; the runs are the Cartesian product of
the leaves, in the order of their sorted keys (so the same grid always gives the same runs in
the same order). Each combination is validated as `replay --settings-file` validates a file
(the API's serializers, the models' own checks) before anything is queued: a grid that names
an unknown key, gives an empty list or a value a field refuses is rejected with the key named.
"""
from __future__ import annotations

import copy
import itertools
import json

from django.core.exceptions import ValidationError

from execution.management.commands.replay import SECTIONS
from execution.replay import DEFAULT_INTERVALS_S
from execution.report import SETTINGS_ROWS, THRESHOLD_ROWS
from scanners.models import BinaryPayout
from trifecta_site.api import settings_serializer

MAX_RUNS = 1000


class GridError(ValueError):
    """A grid (or a base settings file) the sweep refuses, with the key named."""


def canonical(settings: dict) -> str:
    """Settings as one canonical JSON text: equal settings, equal text (the ranking's tie-break)."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _fields(model) -> set[str]:
    return set(settings_serializer(model)().fields)


def leaves(grid) -> list[tuple[tuple[str, ...], list]]:
    """Every (key path, values) of the grid, sorted by path; refuses unknown keys, non-lists and empty lists."""
    if not isinstance(grid, dict) or not grid:
        raise GridError(f"grid: must be a JSON object with any of: {', '.join(SECTIONS)}, each key with a list of values")
    unknown = sorted(set(grid) - set(SECTIONS))
    if unknown:
        raise GridError(f"grid: unknown key {', '.join(unknown)}; expected any of: {', '.join(SECTIONS)}")
    found = []
    for section, values in grid.items():
        if not isinstance(values, dict) or not values:
            raise GridError(f"grid: {section} must be a non-empty object of key: [values]")
        if section in SETTINGS_ROWS:
            _known(section, values, _fields(SETTINGS_ROWS[section]))
            found += [((section, name), v) for name, v in values.items()]
        elif section == "thresholds":
            _known(section, values, set(THRESHOLD_ROWS), what="kind")
            for kind, fields in values.items():
                if not isinstance(fields, dict) or not fields:
                    raise GridError(f"grid: thresholds.{kind} must be a non-empty object of field: [values]")
                _known(f"thresholds.{kind}", fields, _fields(THRESHOLD_ROWS[kind]))
                found += [((section, kind, name), v) for name, v in fields.items()]
        elif section == "intervals_s":
            _known(section, values, set(DEFAULT_INTERVALS_S), what="interval")
            found += [((section, name), v) for name, v in values.items()]
        else:  # payouts: any underlying's symbol
            found += [((section, symbol), v) for symbol, v in values.items()]
    for path, values in found:
        name = ".".join(path)
        if not isinstance(values, list):
            raise GridError(f"grid: {name} must be a list of values to try, e.g. [{json.dumps(values)}]")
        if not values:
            raise GridError(f"grid: {name} is an empty list: give at least one value")
        if len({canonical(v) for v in values}) != len(values):
            raise GridError(f"grid: {name} lists a value twice")
    return sorted(found)


def _known(name: str, values: dict, known: set[str], what: str = "field") -> None:
    unknown = sorted(set(values) - known)
    if unknown:
        raise GridError(f"grid: {name} has no {what} {', '.join(unknown)}; expected any of: {', '.join(sorted(known))}")


def merged(base: dict, top: dict) -> dict:
    """`base` with `top`'s values over it, object by object."""
    result = copy.deepcopy(base)
    for key, value in top.items():
        result[key] = merged(result[key], value) if isinstance(value, dict) and isinstance(result.get(key), dict) else value
    return result


def _nested(path: tuple[str, ...], value) -> dict:
    for key in reversed(path):
        value = {key: value}
    return value


def expand(grid, *, base: dict | None = None) -> list[tuple[dict, dict]]:
    """Every (combination by dotted key, settings) of the grid over `base`, each validated."""
    found = leaves(grid)
    count = 1
    for _, values in found:
        count *= len(values)
    if count > MAX_RUNS:
        raise GridError(f"grid: {count} combinations; at most {MAX_RUNS} in one sweep")
    runs = []
    for picked in itertools.product(*(values for _, values in found)):
        settings = copy.deepcopy(base or {})
        combination = {}
        for (path, _), value in zip(found, picked):
            settings = merged(settings, _nested(path, value))
            combination[".".join(path)] = value
        validate(settings, combination)
        runs.append((combination, settings))
    return runs


def validate(settings: dict, combination: dict) -> None:
    """The settings as a replay would apply them over the defaults, checked without writing anything."""
    where = f" (combination {canonical(combination)})" if combination else ""
    _known("thresholds", settings.get("thresholds") or {}, set(THRESHOLD_ROWS), what="kind")
    _known("intervals_s", settings.get("intervals_s") or {}, set(DEFAULT_INTERVALS_S), what="interval")
    targets = [(name, model, settings.get(name)) for name, model in SETTINGS_ROWS.items()]
    targets += [(f"thresholds.{kind}", model, (settings.get("thresholds") or {}).get(kind)) for kind, model in THRESHOLD_ROWS.items()]
    for name, model, values in targets:
        if not values:
            continue
        serializer = settings_serializer(model)(model(), data=values, partial=True)
        if not serializer.is_valid():
            problems = "; ".join(f"{name}.{field}: {' '.join(map(str, errors))}" for field, errors in serializer.errors.items())
            raise GridError(f"grid: {problems}{where}")
    for symbol, payout in (settings.get("payouts") or {}).items():
        try:
            BinaryPayout(symbol=symbol, payout=payout).full_clean(exclude=["symbol"])
        except ValidationError as exc:
            raise GridError(f"grid: payouts.{symbol}: {' '.join(exc.messages)}{where}")
    for name, value in (settings.get("intervals_s") or {}).items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise GridError(f"grid: intervals_s.{name} must be a positive number of seconds, not {json.dumps(value)}{where}")
