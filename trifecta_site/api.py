"""What every app's API shares: writes under the permissions admin enforces, query-parameter filters, singleton settings views."""
from __future__ import annotations

import copy
from datetime import datetime, timezone as dt_timezone

from django.core.exceptions import ValidationError as ModelValidationError
from django.db import models
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import generics, permissions, serializers


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


class DateTimeField(serializers.DateTimeField):
    """DRF's date-time field with the site's time zone (TIME_ZONE) fixed when the field is built.

    DRF otherwise looks the active time zone up for every value it writes, a context-local
    read that costs more than writing the time; nothing in the desk activates another zone,
    so the output is the same."""

    def __init__(self, **kwargs):
        kwargs.setdefault("default_timezone", timezone.get_default_timezone())
        super().__init__(**kwargs)


class DecimalField(serializers.DecimalField):
    """DRF's decimal field, which rounds every value to its places under a context of its own:
    a value already at them (every value read from its column) is written as it is."""

    def quantize(self, value):
        if self.decimal_places is not None and value.as_tuple().exponent == -self.decimal_places:
            return value
        return super().quantize(value)


class RowSerializer(serializers.ModelSerializer):
    """A list's rows: DRF's ModelSerializer, its model's times and decimals written by the fields above."""

    serializer_field_mapping = {**serializers.ModelSerializer.serializer_field_mapping,
                                models.DateTimeField: DateTimeField, models.DecimalField: DecimalField}


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
