"""The main record answers are declared on their routes (@shapes(answer=...)) with the TypedDicts (and the
template's dataclass) the code builds them as: the OpenAPI document's schema of each IS that declaration's,
and what the code builds fits it. Marked floor: tests/unit/test_boto3_floor.py runs it on pydantic 2.0."""

from __future__ import annotations

import pytest
from comfyui_sagemaker.core.records import ExecutionSummary
from comfyui_sagemaker.core.templates import Template
from comfyui_sagemaker.core.v2.job_view import Job, Mount, job_json
from comfyui_sagemaker.server_routes import ROUTE_TABLES, openapi, schemas
from comfyui_sagemaker.server_routes.http import declared
from pydantic import TypeAdapter

pytestmark = pytest.mark.floor

V2 = openapi.V2
ANSWERS = {
    ("GET", "/executions/{id}"): schemas.ExecutionAnswer,
    ("POST", "/executions"): schemas.ExecutionCreated,
    ("POST", "/executions/{id}/cancel"): ExecutionSummary,
    ("GET", "/templates/{name}"): Template,
    ("POST", "/templates"): Template,
    ("PUT", "/templates/{name}"): Template,
    ("POST", V2 + "/jobs"): Job,
    ("GET", V2 + "/jobs/{id}"): Job,
    ("POST", V2 + "/jobs/{id}/cancel"): Job,
}
RECORD = {"id": "20260101T000000000000-0123abcd", "state": "failed", "prompt_id": "p1",
          "created_at": "2026-01-01T00:00:00Z",
          "started_at": "2026-01-01T00:00:01Z", "finished_at": "2026-01-01T00:00:03Z", "environment": "Portraits",
          "template": "Faces", "labels": {"order": "7"}, "api": "v2", "v2": {"origin": "o", "prefix": "p", "nodes": 3},
          "error": {"code": "node_error", "message": "boom", "node_id": "3", "node_type": "KSampler"}, "outputs": {},
          "webhook": {"url": "https://example.com/h", "state": "delivered", "attempts": 1, "last_status": 200,
                      "last_error": None, "delivered_at": "2026-01-01T00:00:04Z"}}


def test_each_record_answer_is_declared_and_documented_as_its_type():
    doc = openapi.document(ROUTE_TABLES)
    handlers = {(m, p): fn for table in ROUTE_TABLES for m, p, fn in table}
    for (method, path), answer in ANSWERS.items():
        shape = declared(handlers[(method, path)])
        assert shape is not None and shape.answer is answer, (method, path)
        op = doc["paths"][openapi.openapi_path(path)][method.lower()]
        name = answer.__name__
        ok = op["responses"]["2XX"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": openapi.REF.format(model=name)}, (method, path)
        expected = TypeAdapter(answer).json_schema(ref_template=openapi.REF)
        expected.pop("$defs", None)
        documented = doc["components"]["schemas"][name]
        assert set(documented["properties"]) == set(expected["properties"]), name
        assert documented.get("required", []) == expected.get("required", []), name


def test_what_the_code_builds_fits_the_declared_answer():
    job = job_json(RECORD, Mount("http://127.0.0.1:8189", "/sagemaker/v2/Portraits"), 30)
    TypeAdapter(Job).validate_python(job, strict=True)
    assert job["template"] == "Faces" and job["webhook"]["state"] == "delivered"
    TypeAdapter(schemas.ExecutionAnswer).validate_python({**RECORD, "mine": True}, strict=True)
    TypeAdapter(schemas.ExecutionCreated).validate_python(
        schemas.ExecutionCreated(execution_id=RECORD["id"], prompt_id="p1", execution=RECORD), strict=True)
    template = Template("Faces", {"nodes": []}, {"1": {"class_type": "X", "inputs": {}}}, None, 1, "t", "t", None)
    assert TypeAdapter(Template).validate_python(template.to_json()) == template
