"""The API's JSON is DRF's JSON: the orjson renderer writes what DRF's renderer writes."""
import datetime
import decimal
import json
import uuid

import pytest
from django.utils.translation import gettext_lazy
from rest_framework import renderers
from rest_framework.exceptions import ErrorDetail
from rest_framework.utils.serializer_helpers import ReturnDict, ReturnList

from trifecta_site.renderers import JSONRenderer

UTC = datetime.timezone.utc
PAYLOADS = [
    {"count": 3, "next": None, "results": ReturnList([{"id": 1, "net_pct": "0.6000"}], serializer=None)},
    ReturnDict({"limit": [ErrorDetail("Ensure this value is greater than or equal to 0.", code="min_value")]},
               serializer=None),
    {"at": datetime.datetime(2026, 12, 4, 13, 59, 5, 123456, tzinfo=UTC), "day": datetime.date(2026, 12, 4),
     "time": datetime.time(23, 59, 59, 900000), "naive": datetime.datetime(2026, 1, 1)},
    {"decimal": decimal.Decimal("1.10"), "uuid": uuid.UUID(int=7), "lazy": gettext_lazy("This field is required.")},
    {"text": "é, 日本, line\u2028separator\u2029", 1: "an integer key", None: "a null key", "tuple": (1, 2)},
    [0.1, 1e16, -0.0, 2**63 - 1, True, None, ""],
]


@pytest.mark.parametrize("data", PAYLOADS)
def test_the_same_json_as_drfs_renderer(data):
    ours, drfs = JSONRenderer().render(data), renderers.JSONRenderer().render(data)
    assert json.loads(ours) == json.loads(drfs)
    assert (b"\xe2\x80\xa8" in ours, b"\xe2\x80\xa9" in ours) == (False, False)  # escaped, as DRF escapes them


def test_times_read_as_drfs_encoder_writes_them():
    moment = datetime.datetime(2026, 12, 4, 13, 59, 5, 123456, tzinfo=UTC)
    assert json.loads(JSONRenderer().render({"at": moment})) == {"at": "2026-12-04T13:59:05.123456Z"}


def test_indented_output_is_drfs():
    data = {"figures": {"signal": "BUY", "confidence": 0.75, "legs": [1, None]}}
    indented = JSONRenderer().render(data, "application/json; indent=4")
    assert indented == renderers.JSONRenderer().render(data, "application/json; indent=4")
    assert indented.startswith(b'{\n    "figures"')


def test_what_orjson_cannot_write_takes_drfs_path():
    assert json.loads(JSONRenderer().render({"big": 2**70})) == {"big": 2**70}
    with pytest.raises(TypeError):
        JSONRenderer().render({"unknown": object()})
