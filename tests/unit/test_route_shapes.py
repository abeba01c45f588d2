"""The request models (server_routes/schemas.py) accept and refuse what the hand-written checks they replaced
did, in the same words; and the OpenAPI document builds from them on the lowest pydantic allowed (marked
floor: tests/unit/test_boto3_floor.py runs it there)."""

from __future__ import annotations

import pytest
from comfyui_sagemaker.core.errors import BadRequest
from comfyui_sagemaker.server_routes import ROUTE_TABLES, openapi, schemas

pytestmark = pytest.mark.floor


def test_the_document_builds_from_the_models():
    doc = openapi.document(ROUTE_TABLES)
    limit = next(p for p in doc["paths"]["/sagemaker/executions"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 500, "default": 10}
    assert doc["components"]["schemas"]["TemplateExecutionCreate"]["additionalProperties"] is False


@pytest.mark.parametrize("model, data, message", [
    (schemas.ExecutionsQuery, {"limit": "\u00b2"}, "limit must be a whole number from 1 to 500"),
    (schemas.ExecutionsQuery, {"limit": "+5"}, "limit must be a whole number from 1 to 500"),
    (schemas.ExecutionsQuery, {"state": "paused"}, "state must be one of queued, running, succeeded, failed, "
                                                   "cancelled"),
    (schemas.EnvironmentQuery, {"version": "0"}, "version must be a whole number from 1 to 999999"),
    (schemas.LogsQuery, {"contains": "x" * 201}, "contains: at most 200 characters"),
    (schemas.TemplateExecutionCreate, {"wait": True}, "wait must be a number of seconds from 0 to 3600"),
    (schemas.TemplateExecutionCreate, {"surprise": 1}, "unknown fields: surprise (allowed: client_id, inputs, wait, "
                                           "webhook_url)"),
    (schemas.TemplateCreate, {"name": "A"}, "missing field: workflow"),
    (schemas.Watcher, {"enabled": 1}, "send {enabled: true | false}"),
    (schemas.NameCheck, {"kind": "x", "name": "a"}, "kind must be 'template' or 'environment'"),
    (schemas.ConfigChange, {"replace": "yes"}, "replace must be true or false"),
])
def test_a_refusal_is_a_400_in_the_routes_words(model, data, message):
    with pytest.raises(BadRequest) as err:
        schemas.parse(model, data)
    assert err.value.message == message and err.value.code == "bad_request"


@pytest.mark.parametrize("model, data, expected", [
    (schemas.ExecutionsQuery, {}, {"owner": "me", "limit": 10, "state": None}),
    (schemas.EnvironmentDeleteQuery, {"force": "Yes"}, {"force": True}),
    (schemas.EnvironmentDeleteQuery, {"force": "no"}, {"force": False}),
    (schemas.ModelUploadQuery, {"overwrite": "True", "sha256": ""}, {"overwrite": False, "sha256": None}),
    (schemas.LogsQuery, {"contains": ""}, {"contains": None, "tail": 200}),
    (schemas.TemplateExecutionCreate, {"wait": 2, "client_id": None}, {"wait": 2, "client_id": None}),
])
def test_what_is_accepted_reads_as_before(model, data, expected):
    got = schemas.parse(model, data)
    assert {k: getattr(got, k) for k in expected} == expected
