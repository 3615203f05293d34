"""Bad input is refused with a message that says what and where, and changes nothing.

- The API's writes under schemathesis with a staff token (tests/site/test_api_schema.py
  runs every operation; here every PUT/PATCH is also checked for what it did: a 200 is
  what a GET reads back, a refusal names the field and leaves the stored row and the
  audit log as they were).
- Risk limits and thresholds, through the API and through admin, under hypothesis:
  negative, out-of-range, huge, non-numeric, NaN/Infinity, unknown fields.
- Recordings cut short, with a column too many or too few, junk prices or time going
  back, empty, and large: the error names the file and the line
  (tests/scanners/test_replay_feed.py fuzzes the row grammar itself).
"""
import json
import os
import time
from decimal import Decimal

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.validators import MaxValueValidator, MinValueValidator
from django.core.wsgi import get_wsgi_application
from django.db import models
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings, strategies as st
from rest_framework.authtoken.models import Token
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from decisions.models import Controls, RiskLimits
from scanners.api import THRESHOLD_MODELS
from scanners.feeds.base import RecordingError
from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed
from tests.scanners.test_replay_feed import BAR_FILE, BOOK_FILE, QUOTE_FILE, QUOTE_HEAD, broken, reference_verdict
from tests.site.test_api_schema import staff_token  # noqa: F401  (the schemathesis run's fixture)
from trifecta_site.api import settings_serializer
from trifecta_site.models import ConfigChange

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 100))  # FUZZ_EXAMPLES=2000 for a long run
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

SETTINGS = {
    "/api/controls/": (Controls, None),
    "/api/limits/": (RiskLimits, "/admin/decisions/risklimits/1/change/"),
    **{f"/api/thresholds/{kind}/": (model, f"/admin/scanners/{model._meta.model_name}/1/change/")
       for kind, model in THRESHOLD_MODELS.items()},
}


def stored(model) -> dict:
    """The row as the database holds it now (not a process's kept copy)."""
    return model.objects.filter(pk=1).values().first()


# --- schemathesis: every write to the settings endpoints -------------------------------------

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
schema.app = get_wsgi_application()
writes = schema.include(path=list(SETTINGS), method=["PUT", "PATCH"])


@pytest.fixture
def operator_token(staff_token):  # noqa: F811
    """The fuzzer's staff token, its user holding every permission: writes reach validation, not a 403."""
    Token.objects.get(key=staff_token).user.user_permissions.set(Permission.objects.all())
    return staff_token


@writes.parametrize()
@settings(max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=list(HealthCheck))
def test_a_write_is_applied_as_read_back_or_refused_naming_the_field(case, operator_token):
    staff_token = operator_token
    model, _ = SETTINGS[case.path]
    model.get_solo()
    before, changes = stored(model), ConfigChange.objects.count()
    headers = {"Authorization": f"Token {staff_token}"}
    response = case.call(headers=headers)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
    if case.method not in ("PUT", "PATCH"):  # schemathesis also tries methods the endpoint does not have
        assert response.status_code in (200, 405) and stored(model) == before, (case.method, response.status_code)
        return
    if response.status_code == 200:  # what a GET now reads, from the database row
        assert json.loads(JSONRenderer().render(settings_serializer(model)(model.objects.get(pk=1)).data)) == response.json()
        return
    assert response.status_code in (400, 415), response.text
    assert stored(model) == before and ConfigChange.objects.count() == changes
    body = response.json()
    sent = {str(name).strip() for name in case.body} if isinstance(case.body, dict) else set()
    named = {name.strip() for name, messages in body.items()
             # a form field's name can change on the way: a multipart header cannot hold a line break
             if case.media_type == "application/json" or messages != ["unknown field"]}
    assert body and named <= sent | {"non_field_errors", "detail"}, (case.body, body)
    for messages in body.values():
        messages = messages if isinstance(messages, list) else [messages]
        assert messages and all(isinstance(m, str) and m.strip() for m in messages), body


# --- hypothesis: limits and thresholds through the API and admin ------------------------------

NON_NUMBERS = ["NaN", "nan", "-NaN", "sNaN", "Infinity", "-Infinity", "inf", "1e400", "-1e400", "ten", "1,5", "0x10",
               "1 000", "", "½", "--1", "1..2", "5%", "$100"]


def bounds(field) -> tuple[Decimal | None, Decimal | None]:
    lows = [Decimal(v.limit_value) for v in field.validators if isinstance(v, MinValueValidator)]
    highs = [Decimal(v.limit_value) for v in field.validators if isinstance(v, MaxValueValidator)]
    return max(lows, default=None), min(highs, default=None)


def numeric_fields(model) -> list:
    return [f for f in model._meta.concrete_fields
            if isinstance(f, (models.DecimalField, models.IntegerField)) and not isinstance(f, models.AutoField)]


def bad_number(field):
    """Values the field must refuse: below its minimum, above its maximum, too many digits, or not a finite number."""
    low, high = bounds(field)
    whole_digits = field.max_digits - field.decimal_places if isinstance(field, models.DecimalField) else 19
    options = [st.sampled_from(NON_NUMBERS),
               st.integers(min_value=whole_digits, max_value=60).map(lambda k: str(10**k)),
               st.integers(min_value=10**whole_digits, max_value=10**40)]
    if low is not None:
        options.append(st.decimals(max_value=low - Decimal("0.01"), min_value=-10**9, places=2).map(str))
    if high is not None:
        options.append(st.decimals(min_value=high + Decimal("0.01"), max_value=high * 1000 + 1, places=2).map(str))
    if isinstance(field, models.IntegerField):
        options.append(st.sampled_from(["1.5", "2.25", "1e3"]))
    return st.one_of(options)


BAD_TEXT = {
    "day_timezone": ["Mars/Olympus", "", "UTC+5", "../../etc/passwd", "Europe/", "\x00UTC", "x" * 65],
    "expiries": ["sixty", "0", "-60", "60,,x", "", " , ", "60.5", "1e3", "x" * 101],
    "timeframe": ["2m", "", "1M", "1m ", "minute"],
}


@st.composite
def bad_setting(draw, *, admin: bool):
    """(api path, model, field, bad value): a number out of range or unreadable, a bad text, or (API) an unknown field."""
    path = draw(st.sampled_from([p for p, (m, url) in SETTINGS.items() if (url or not admin) and m is not Controls]))
    model = SETTINGS[path][0]
    texts = [name for name in BAD_TEXT if hasattr(model, name)]
    kinds = ["number"] + (["text"] if texts else []) + ([] if admin else ["unknown"])
    kind = draw(st.sampled_from(kinds))
    if kind == "number":
        field = draw(st.sampled_from(numeric_fields(model)))
        return path, model, field.name, draw(bad_number(field))
    if kind == "text":
        name = draw(st.sampled_from(texts))
        return path, model, name, draw(st.sampled_from(BAD_TEXT[name]))
    known = {f.name for f in model._meta.concrete_fields}
    name = draw(st.from_regex(r"[a-z][a-z_]{0,20}", fullmatch=True).filter(lambda n: n not in known))
    return path, model, name, draw(st.integers(0, 10) | st.text(max_size=5))


@pytest.fixture
def staff_api(db):
    user = get_user_model().objects.create_user("operator", password="pw-for-tests-1", is_staff=True)
    user.user_permissions.set(Permission.objects.all())  # an operator allowed every change: refusals are validation's
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    for model, _ in SETTINGS.values():
        model.get_solo()
    return client


@fuzz
@given(bad=bad_setting(admin=False), method=st.sampled_from(["patch", "put"]))
def test_the_api_refuses_every_bad_limit_or_threshold_naming_it_and_stores_nothing(staff_api, bad, method):
    path, model, field, value = bad
    before, changes = stored(model), ConfigChange.objects.count()
    body = {field: value}
    if method == "put":  # a whole row: every other field as stored, so only the bad one can be wrong
        body = {**staff_api.get(path).json(), field: value}
    response = getattr(staff_api, method)(path, body, format="json")
    assert response.status_code == 400, (path, field, value, response.status_code, response.content)
    messages = response.json().get(field)
    assert messages and all(isinstance(m, str) and m for m in messages), response.json()
    assert stored(model) == before and ConfigChange.objects.count() == changes


def test_every_numeric_limit_and_threshold_has_a_lower_bound():
    """A negative limit, cap or threshold means nothing: each numeric field refuses it."""
    unbounded = [f"{model.__name__}.{f.name}" for model, _ in SETTINGS.values() for f in numeric_fields(model)
                 if bounds(f)[0] is None or bounds(f)[0] < 0]
    assert unbounded == []


@pytest.fixture
def operator(client, db):
    client.force_login(get_user_model().objects.create_superuser("admin-operator", password="pw-for-tests-1"))
    for model, _ in SETTINGS.values():
        model.get_solo()
    return client


def admin_form(model) -> dict:
    """The change form as admin shows it, every field filled with the stored value."""
    row = stored(model)
    return {k: ("on" if v is True else "" if v in (False, None) else str(v)) for k, v in row.items() if k != "id"}


@fuzz
@given(bad=bad_setting(admin=True))
def test_admin_refuses_every_bad_limit_or_threshold_with_a_form_error_and_stores_nothing(operator, bad):
    path, model, field, value = bad
    url = SETTINGS[path][1]
    before, changes = stored(model), ConfigChange.objects.count()
    response = operator.post(url, {**admin_form(model), field: str(value)})
    assert response.status_code == 200, (field, value, response.status_code)  # the form again, not a redirect
    errors = response.context["adminform"].form.errors
    assert field in errors and all(str(m) for m in errors[field]), (field, value, errors)
    assert stored(model) == before and ConfigChange.objects.count() == changes


# --- recordings --------------------------------------------------------------------------------

MUTATIONS = ["cut", "columns", "price", "time"]
JUNK_PRICES = ["abc", "1e5", "NaN", "-1", "1.", ".5", "1.2.3", "0x1F", "1_000", "∞", " 1", "1 "]


@st.composite
def damaged_quotes(draw):
    """(good rows, damaged text, line of the damage): one mutation at one row of an otherwise valid file."""
    count = draw(st.integers(2, 40))
    stamps = sorted(draw(st.lists(st.integers(0, 10**6), min_size=count, max_size=count)))
    rows = [f"{ts},{draw(st.decimals(1, 10**5, places=2))},{draw(st.decimals(1, 10**5, places=3))},1,2" for ts in stamps]
    index = draw(st.integers(1, count - 1))
    mutation = draw(st.sampled_from(MUTATIONS))
    row = rows[index]
    if mutation == "cut":  # a writer killed mid-row: the file ends inside this row
        return rows[:index], "\n".join(rows[:index] + [row[:draw(st.integers(1, len(row) - 1))]]), index + 2, mutation
    fields = row.split(",")
    if mutation == "columns":
        fields = draw(st.sampled_from([fields[:-1], fields + ["3"], fields[:1], fields + fields]))
    elif mutation == "price":
        fields[draw(st.integers(1, 4))] = draw(st.sampled_from(JUNK_PRICES))
    else:
        fields[0] = str(stamps[index - 1] - draw(st.integers(1, 10**6)))
    return rows[:index], "\n".join(rows[:index] + [",".join(fields)] + rows[index + 1:]) + "\n", index + 2, mutation


@fuzz
@given(damage=damaged_quotes())
def test_a_damaged_quotes_file_names_the_file_and_the_line_or_reads_the_rows_it_holds(tmp_path_factory, damage):
    good, text, line, mutation = damage
    path = broken(tmp_path_factory.mktemp("rec"), QUOTE_FILE, QUOTE_HEAD + text)
    lines = text.rstrip("\n").split("\n")
    expected_line, _ = reference_verdict(lines)
    try:
        rows = RecordingReader(path).load_all()
    except RecordingError as error:
        assert expected_line == line and error.line == line, (mutation, text, str(error))
        assert str(error).startswith(f"{path / QUOTE_FILE}:{line}: ") and error.problem
        with pytest.raises(RecordingError) as served:  # the same message when a scan asks for the quote
            reader = RecordingReader(path)
            ReplayFeed(reader, ReplayClock.stepped(10**7)).quote("binance", "BTC/USDT")
        assert str(served.value) == str(error)
    else:
        assert mutation == "cut" and expected_line is None, (mutation, text)  # a cut that still reads as a row
        series = RecordingReader(path).quotes[("binance", "BTC/USDT")]
        assert len(series) == len(good) + 1 and rows > len(good)


@pytest.mark.parametrize("relative, problem", [
    (QUOTE_FILE, "header must be ts,bid,ask,bid_size,ask_size, found ''"),
    (BAR_FILE, "header must be ts,open,high,low,close,volume, found ''"),
])
def test_an_empty_file_is_named_with_what_its_first_line_must_be(tmp_path, relative, problem):
    path = broken(tmp_path, relative, "")
    with pytest.raises(RecordingError) as error:
        RecordingReader(path).load_all()
    assert error.value.path.endswith(relative) and error.value.line == 1 and problem in str(error.value)


def test_an_empty_books_file_holds_no_snapshot_and_the_reader_says_so_by_serving_none(tmp_path):
    path = broken(tmp_path, BOOK_FILE, "")
    reader = RecordingReader(path)
    reader.load_all()
    assert ReplayFeed(reader, ReplayClock.stepped(10**6)).book("kraken", "BTC/USDT") is None


LARGE_ROWS = 300_000


def large_quotes(bad_line: int | None = None) -> str:
    rows = [f"{1_700_000_000_000 + 10 * i},{30000 + i % 1000}.{i % 100:02d},{30001 + i % 1000}.5,0.{i % 97 + 1},1.25"
            for i in range(LARGE_ROWS)]
    if bad_line is not None:
        rows[bad_line - 2] = rows[bad_line - 2].replace(",1.25", ",1.2x")
    return QUOTE_HEAD + "\n".join(rows) + "\n"


def test_a_large_file_reads_fast_and_a_bad_row_near_its_end_is_named(tmp_path):
    """300,000 rows (about 13 MB) generated here, never committed."""
    path = broken(tmp_path / "good", QUOTE_FILE, large_quotes())
    started = time.perf_counter()
    reader = RecordingReader(path)
    assert reader.load_all() > LARGE_ROWS
    elapsed = time.perf_counter() - started
    feed = ReplayFeed(reader, ReplayClock.stepped(1_700_000_000_000 + 10 * (LARGE_ROWS - 1)))
    assert feed.quote("binance", "BTC/USDT").ask_size == Decimal("1.25")
    assert elapsed < 5, f"{LARGE_ROWS} rows took {elapsed:.2f} s"
    bad = LARGE_ROWS - 7
    path = broken(tmp_path / "bad", QUOTE_FILE, large_quotes(bad_line=bad))
    with pytest.raises(RecordingError) as error:
        RecordingReader(path).load_all()
    assert error.value.line == bad and str(error.value) == f"{path / QUOTE_FILE}:{bad}: ask_size is not a plain decimal number: '1.2x'"
