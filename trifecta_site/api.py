"""What every app's API shares: writes under the permissions admin enforces, time-range filters, list pages read as rows,
singleton settings views."""
from __future__ import annotations

import copy
import decimal
import functools

from collections.abc import Callable
from datetime import datetime, timezone as dt_timezone
from typing import NamedTuple

import orjson

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, ValidationError as ModelValidationError
from django.db import models
from django.db.models import Expression, ExpressionWrapper, F, TextField
from django.db.models.functions import Cast
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import generics, permissions, serializers, viewsets
from rest_framework.relations import PrimaryKeyRelatedField
from rest_framework.settings import ISO_8601, api_settings

from . import statements
from .pagination import list_filters


class ModelPermissionsOrReadOnly(permissions.DjangoModelPermissions):
    """Any signed-in user reads; a write needs what admin needs for the same change: an
    active staff account holding the model's permission (`change_controls` for PATCH
    /api/controls/). Staff alone was enough before, so the API let through what admin refused."""

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in permissions.SAFE_METHODS:
            return True
        if not (user.is_active and user.is_staff):
            return False
        model = getattr(view, "model", None) or view.get_queryset().model
        return user.has_perms(self.get_required_permissions(request.method, model))


def filter_param(name: str, choices=None, *, integer: bool = False) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.INT if integer else OpenApiTypes.STR, enum=choices,
                            description=f"only rows whose {name} is this")


def epoch_ms_param(name: str, what: str) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.INT, description=f"{what}, epoch milliseconds")


def integer_param(request, name: str, what: str) -> int | None:
    """`?name=` as a whole number a database column holds (64-bit signed), else a 400 saying `what` it must be.

    `str.isdigit()` is not enough: it accepts '²', and SQLite cannot bind a number past
    2**63 (schemathesis found both as 500s)."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    text = raw.removeprefix("-")
    if not (text.isascii() and text.isdigit()) or not -2**63 <= (value := int(raw)) < 2**63:
        raise serializers.ValidationError({name: what})
    return value


def time_range(request, field: str, queryset):
    """Filter `queryset` on `?since=` / `?until=` (epoch ms); a malformed value is a 400 naming it."""
    for name, lookup in (("since", "gte"), ("until", "lt")):
        raw = request.query_params.get(name)
        if raw is None:
            continue
        try:
            moment = datetime.fromtimestamp(int(raw) / 1000, tz=dt_timezone.utc)
        except (ValueError, OverflowError, OSError):
            raise serializers.ValidationError({name: "an integer of epoch milliseconds"})
        queryset = queryset.filter(**{f"{field}__{lookup}": moment})
    return queryset


def exact_filters(request, queryset, names: dict[str, str]):
    """`?kind=arbitrage&status=executed`-style filters: query parameter -> model lookup."""
    for param, lookup in names.items():
        value = request.query_params.get(param)
        if value is not None:
            if "\x00" in value:  # PostgreSQL text cannot hold it: a 400, not a database error
                raise serializers.ValidationError({param: "must not contain NUL characters"})
            queryset = queryset.filter(**{lookup: value})
    return queryset


class RowsViewSet(viewsets.ReadOnlyModelViewSet):
    """A read-only list whose pages are serialized from `.values()` rows through the serializer's own fields.

    DRF builds a model instance per row and walks every field's attribute; a page of 50
    opportunities with their decision trails took about 20 ms that way. Here each value goes
    through the same field's `to_representation`, so the output and the schema are the
    serializer's. A nested list field (`many=True`) of a reverse foreign key is read with one
    more query for the whole page, in the related model's own order, as `prefetch_related` does.
    """

    def list(self, request, *args, **kwargs):
        queryset = self.filter_queryset(self.get_queryset())
        serializer_class = self.get_serializer_class()
        columns = _columns(queryset.model, serializer_class)
        rows = self.paginate_queryset(PageRows(queryset, columns, key=(type(self), serializer_class, list_filters(request))))
        results = _represent(columns, rows)
        for name, field in _fields_of(serializer_class).items():
            if isinstance(field, serializers.ListSerializer):
                _nest(queryset.model, name, type(field.child), results, [row["id"] for row in rows])
        return self.get_paginated_response(results)


class PageRows:
    """A list's `.values()` rows as the paginator slices and counts them, its query compiled by
    the ORM once per list (`key`: the view, its serializer and its filters) and then sent as
    written with the page's LIMIT and OFFSET (prepared on PostgreSQL). Building and compiling
    the queryset of a page took a sixth of an opportunities page."""

    _compiled: dict[tuple, tuple] = {}

    def __init__(self, queryset, columns: list[Column], *, key: tuple):
        self.queryset, self.columns, self.key = queryset, columns, key

    def count(self) -> int:
        return self.queryset.count()

    def __getitem__(self, rows: slice) -> list[dict]:
        compiled = self._compiled.get(self.key)
        if compiled is None:
            if len(self._compiled) >= 256:
                self._compiled.clear()
            compiled = self._compiled[self.key] = _compiled(_values(self.queryset, self.columns))
        text, params, compiler, names = compiled
        return _rows(f"{text} {compiler.connection.ops.limit_offset_sql(rows.start, rows.stop)}", params, compiler, names)


def _compiled(queryset) -> tuple:
    """A `.values()` queryset's SQL and parameters, the compiler whose converters its rows go
    through, and the names `.values()` gives its columns (as ValuesIterable reads them)."""
    compiler = queryset.query.get_compiler(queryset.db)
    text, params = compiler.as_sql()
    query = queryset.query
    return text, params, compiler, list(query.selected or [*query.extra_select, *query.values_select, *query.annotation_select])


def _rows(text: str, params, compiler, names: list[str]) -> list[dict]:
    """A compiled `.values()` query's rows, sent as written and converted by its compiler."""
    return [dict(zip(names, row)) for row in compiler.results_iter(results=[statements.fetch(text, params, [])])]


@functools.cache
def _fields_of(serializer_class) -> dict:
    """The serializer's fields, built once (they depend on the model, not on the request)."""
    return serializer_class().fields


class Column(NamedTuple):
    name: str  # in the output
    key: str  # in a `.values()` row
    read: str | Expression  # what `.values()` reads
    convert: Callable


@functools.cache
def _columns(model, serializer_class) -> list[Column]:
    """How each field's value is read and written (a nested list has its own).

    A JSON column is read as the text it is stored as and written out as it is
    (`orjson.Fragment`, see `renderers.JSONRenderer`): decoding the figures and reasons of
    a page only to encode them again took an eighth of its time. A time is read as text
    and parsed by `datetime.fromisoformat`: the database driver's parsing of 250 times a
    page was the largest cost left."""
    columns = []
    for name, field in _fields_of(serializer_class).items():
        if isinstance(field, serializers.ListSerializer):
            continue
        if _stored_json(model, field):
            key = f"_{name}_json"
            columns.append(Column(name, key, ExpressionWrapper(F(field.source), output_field=TextField()), orjson.Fragment))
        elif (iso := _iso_writer(field)) is not None and settings.USE_TZ and _is_column(model, field, models.DateTimeField):
            columns.append(Column(name, f"_{name}_text", Cast(F(field.source), TextField()), _time_from_text(iso, field.default_timezone())))
        else:
            columns.append(Column(name, field.source, field.source, _converter(field)))
    return columns


def _stored_json(model, field) -> bool:
    """A serializer JSONField that writes a model JSONField's value unchanged."""
    return (type(field) is serializers.JSONField and not field.binary and _is_column(model, field, models.JSONField)
            and model._meta.get_field(field.source).decoder is None)


def _is_column(model, field, kind: type[models.Field]) -> bool:
    try:
        return isinstance(model._meta.get_field(field.source), kind)
    except FieldDoesNotExist:
        return False


def _time_from_text(iso: Callable, zone) -> Callable:
    """A stored time's text (PostgreSQL's `2026-12-04 13:59:05.1+00`, SQLite's naive UTC) as `iso` writes it.

    In UTC, DRF's output is the stored text itself, with a `T`, six digits of fraction
    (PostgreSQL trims trailing zeros) and a `Z`; any other zone goes through `iso`."""
    def convert(text):
        moment = datetime.fromisoformat(text)
        return iso(moment if moment.tzinfo is not None else moment.replace(tzinfo=dt_timezone.utc))

    if str(zone) != "UTC":
        return convert

    def utc(text):
        body = text[:-3] if text.endswith("+00") else text
        offset = body[19:]
        if len(body) < 19 or body[10] != " " or "+" in offset or "-" in offset or "Z" in offset:
            return convert(text)  # an offset other than +00: through `iso`
        if len(body) > 19:  # a fraction
            return f"{body[:10]}T{body[11:20]}{body[20:].ljust(6, '0')}Z"
        return f"{body[:10]}T{body[11:]}Z"
    return utc


def _values(queryset, columns: list[Column]):
    return queryset.values(*(c.read for c in columns if isinstance(c.read, str)),
                           **{c.key: c.read for c in columns if not isinstance(c.read, str)})


def _represent(columns: list[Column], rows: list[dict]) -> list[dict]:
    return [{name: None if (value := row[key]) is None else convert(value) for name, key, _, convert in columns}
            for row in rows]


PLAIN_CONVERTERS = {serializers.IntegerField: int, serializers.CharField: str, serializers.BooleanField: bool}


def _converter(field):
    """`field.to_representation` for one column's values, without the per-value work that does
    not depend on the value (the same output: the API tests compare both)."""
    if isinstance(field, PrimaryKeyRelatedField):
        return lambda value: value  # `.values()` gives the key itself
    if isinstance(field, serializers.DecimalField) and field.decimal_places is not None and not (
            field.normalize_output or field.localize or not getattr(field, "coerce_to_string", True)):
        context = decimal.getcontext().copy()
        if field.max_digits is not None:
            context.prec = field.max_digits
        exponent, rounding = decimal.Decimal(".1") ** field.decimal_places, field.rounding

        def fixed(value):  # a column of the field's scale gives values already at its exponent
            if value.same_quantum(exponent):
                return f"{value:f}"
            return f"{value.quantize(exponent, rounding=rounding, context=context):f}"
        return fixed
    if (iso := _iso_writer(field)) is not None:
        return iso
    if type(field) in PLAIN_CONVERTERS:  # their `to_representation` is this builtin of the value
        return PLAIN_CONVERTERS[type(field)]
    if type(field) in (serializers.JSONField, serializers.ChoiceField) and not getattr(field, "binary", False):
        return lambda value: value if isinstance(value, (str, dict, list)) else field.to_representation(value)
    return field.to_representation


def _iso_writer(field) -> Callable | None:
    """DRF's ISO 8601 output of an aware time for a DateTimeField in the default time zone (else None)."""
    if not (isinstance(field, serializers.DateTimeField) and getattr(field, "format", api_settings.DATETIME_FORMAT) == ISO_8601
            and getattr(field, "timezone", None) is None):
        return None
    zone = field.default_timezone()
    if zone is None:
        return None

    def iso(value):
        text = value.astimezone(zone).isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return iso


def _nest(model, name: str, serializer_class, results: list[dict], ids: list) -> None:
    relation = model._meta.get_field(name)
    related, key = relation.related_model, relation.field.attname
    columns = _columns(related, serializer_class)
    compiled = _nested_query(model, name, serializer_class, len(ids)) if ids else None
    if compiled is not None:
        text, compiler, names = compiled
        rows = _rows(text, ids, compiler, names)
    else:
        rows = list(_nested_values(related, key, columns, ids))
    children = {result["id"]: [] for result in results}
    for row, child in zip(rows, _represent(columns, rows)):
        children[row[key]].append(child)
    for result in results:
        result[name] = children[result["id"]]


def _nested_values(related, key: str, columns: list[Column], ids: list):
    """The `.values()` rows of a nested list's children of these parents, with the parent's key."""
    return _values(related.objects.filter(**{f"{key}__in": ids}), [Column(key, key, key, None), *columns])


@functools.lru_cache(maxsize=64)
def _nested_query(model, name: str, serializer_class, count: int) -> tuple | None:
    """The query of a nested list for `count` parent ids, compiled by the ORM once per count:
    its SQL (whose only parameters are the ids), the compiler whose converters its rows go
    through, and the `.values()` names of its columns. Building and compiling it took a
    fifth of an opportunities page; sent as written (`trifecta_site.statements`), PostgreSQL
    prepares it too. None when something else is a parameter as well."""
    relation = model._meta.get_field(name)
    related, key = relation.related_model, relation.field.attname
    stand_ins = list(range(1, count + 1))
    text, params, compiler, names = _compiled(_nested_values(related, key, _columns(related, serializer_class), stand_ins))
    return (text, compiler, names) if list(params) == stand_ins else None


class SettingsSerializer(serializers.ModelSerializer):
    """A singleton settings row; the model's own validation (`full_clean`) decides, as in admin."""

    def to_internal_value(self, data):
        """A misspelt field is refused, not silently ignored (as `replay --settings-file` refuses it)."""
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["unknown field"] for name in unknown})
        return super().to_internal_value(data)

    def validate(self, attrs):
        candidate = copy.copy(self.instance)  # the stored row, changed: validated before anything is saved
        for name, value in attrs.items():
            setattr(candidate, name, value)
        try:
            candidate.full_clean()
        except ModelValidationError as exc:
            raise serializers.ValidationError(exc.message_dict)
        return attrs


class SingletonSettingsView(generics.RetrieveUpdateAPIView):
    """GET the row; PUT/PATCH it (staff with the model's change permission). Every change is audited with the user who made it."""

    permission_classes = [ModelPermissionsOrReadOnly]
    model = None

    def get_object(self):
        return self.model.get_solo()

    def perform_update(self, serializer):
        instance = serializer.instance
        for name, value in serializer.validated_data.items():
            setattr(instance, name, value)
        instance.save(changed_by=self.request.user)
        instance.refresh_from_db()  # answer what is stored (e.g. -0.00 is stored as 0.00), as a GET reads it


def settings_serializer(model_class) -> type[SettingsSerializer]:
    meta = type("Meta", (), {"model": model_class, "exclude": ["id"]})
    return type(f"{model_class.__name__}Serializer", (SettingsSerializer,), {"Meta": meta})
