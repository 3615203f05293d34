"""schemathesis over the whole OpenAPI schema, with a staff token (reads and writes):
no 5xx and every response as the schema says. The health endpoint is left out: its 503
(a desk process is down, as in this test) is its documented answer."""
import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
schema.app = get_wsgi_application()
schema = schema.exclude(path="/api/health/")


@pytest.fixture
def staff_token(db):
    """A staff token; the WSGI app keeps the test's connection open (as Django's test client does)."""
    from django.contrib.auth import get_user_model
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.create_user("fuzzer", password="pw-for-tests-1", is_staff=True)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield Token.objects.create(user=user).key
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_within_its_schema(case, staff_token):
    case.call_and_validate(headers={"Authorization": f"Token {staff_token}"},
                           checks=[not_a_server_error, response_schema_conformance])
