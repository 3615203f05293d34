"""Who a REST API token belongs to, for the API and the WebSocket stream alike."""
from __future__ import annotations

import functools

from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from . import statements as sql


@functools.cache
def _lookup() -> tuple[str, list]:
    user = get_user_model()
    token_fields, user_fields = Token._meta.concrete_fields, user._meta.concrete_fields
    columns = [f"{sql.table(Token)}.{sql.column(Token, f.name)}" for f in token_fields]
    columns += [f"{sql.table(user)}.{sql.column(user, f.name)}" for f in user_fields]
    text = (f"SELECT {', '.join(columns)} FROM {sql.table(Token)} JOIN {sql.table(user)} "
            f"ON {sql.table(user)}.{sql.column(user, user._meta.pk.name)} = {sql.table(Token)}.{sql.column(Token, 'user')} "
            f"WHERE {sql.table(Token)}.{sql.column(Token, 'key')} = %s")
    return text, [*token_fields, *user_fields]


def token_with_user(key: str) -> Token | None:
    """The token with this key and its user (`token.user`), in one written-out statement; None when there is none.

    The ORM's `select_related("user").get(key=...)`, built and compiled for every API
    request, was a sixth of a list page's work."""
    text, fields = _lookup()
    rows = sql.fetch(text, [key], fields)
    if not rows:
        return None
    width = len(Token._meta.concrete_fields)
    token = sql.instance_from(Token, [rows[0][:width]])
    token.user = sql.instance_from(get_user_model(), [rows[0][width:]])
    return token


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication (the same answers and messages), with the lookup above."""

    def authenticate_credentials(self, key):
        token = token_with_user(key)
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return (token.user, token)
