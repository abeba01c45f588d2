"""The OpenAPI document of the extension's routes is generated from the models the handlers validate with
(server_routes/schemas.py, declared on each handler with @shapes): valid OpenAPI 3.1, every route in it, and
each query, body and answer in it IS the JSON schema of the handler's model, so the two cannot drift."""

from __future__ import annotations

from comfyui_sagemaker.core.v2.jobs_v2 import FIELDS as V2_FIELDS
from comfyui_sagemaker.core.v2.jobs_v2 import JobRequest
from comfyui_sagemaker.server_routes import ROUTE_TABLES, openapi, schemas
from comfyui_sagemaker.server_routes.http import declared
from openapi_spec_validator import validate

# POSTs that act on the path alone (a body is not read).
NO_BODY = {("POST", "/tasks/{id}/cancel"), ("POST", "/jobs/{id}/cancel"),
           ("POST", "/executions/{id}/cancel"), ("POST", "/inputs/scan"),
           ("POST", "/endpoints/{name}/stop"), ("POST", "/endpoints/{name}/start"),
           ("POST", "/v2/{environment}/api/v2/jobs/{id}/cancel"), ("POST", "/config/reload")}
DOC = openapi.document(ROUTE_TABLES)


def routes():
    return [(method, openapi.openapi_path(path)[len("/sagemaker"):], fn) for table in ROUTE_TABLES
            for method, path, fn in table]


def resolve(schema: dict) -> dict:
    ref = schema.get("$ref")
    return DOC["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


def test_the_document_is_valid_openapi_and_lists_every_route():
    validate(DOC)  # raises on an invalid document
    for method, path, _ in routes():
        op = DOC["paths"]["/sagemaker" + path][method.lower()]
        assert op["summary"] and op["operationId"], (method, path)


def test_every_route_with_a_body_declares_its_model():
    for method, path, fn in routes():
        if method in ("POST", "PUT") and (method, path) not in NO_BODY:
            shape = declared(fn)
            assert shape is not None and (shape.body is not None or shape.media != "application/json"), \
                f"{method} {path} reads a body but declares no model (@shapes(body=...))"
        elif (method, path) in NO_BODY:
            assert declared(fn) is None or declared(fn).body is None, (method, path)


def test_each_documented_body_query_and_answer_is_its_models_schema():
    seen = 0
    for method, path, fn in routes():
        shape = declared(fn)
        if shape is None:
            continue
        op = DOC["paths"]["/sagemaker" + path][method.lower()]
        if shape.body is not None:
            documented = resolve(op["requestBody"]["content"][shape.media]["schema"])
            expected = shape.body.model_json_schema(ref_template=openapi.REF)
            assert set(documented["properties"]) == set(expected["properties"]), (method, path)
            for name, prop in expected["properties"].items():  # each field's schema, a left-out field's None aside
                assert documented["properties"][name] == {k: v for k, v in prop.items()
                                                          if (k, v) != ("default", None)}, (method, path, name)
            assert documented.get("required", []) == expected.get("required", []), (method, path)
            assert documented.get("additionalProperties", True) == expected.get("additionalProperties", True)
            seen += 1
        if shape.query is not None:
            documented = {p["name"]: p for p in op["parameters"] if p["in"] == "query"}
            fields = shape.query.model_fields
            assert set(documented) == set(fields), (method, path)
            for name, field in fields.items():
                default = field.get_default()
                assert documented[name]["schema"].get("default") == default, (method, path, name)
            seen += 1
        if shape.answer is not None:
            assert "$ref" in op["responses"]["2XX"]["content"]["application/json"]["schema"]
    assert seen >= 20


def test_the_documented_defaults_are_what_the_handlers_use():
    # The drift this replaced: `limit` was documented "default 50" while the handler took 10.
    def default(path: str, name: str):
        op = DOC["paths"]["/sagemaker" + path]["get"]
        return next(p["schema"].get("default") for p in op["parameters"] if p["name"] == name)

    assert default("/executions", "limit") == schemas.ExecutionsQuery().limit == 10
    assert default("/v2/{environment}/api/v2/jobs", "limit") == schemas.V2JobsQuery().limit == 50
    assert default("/endpoints/{name}/logs", "tail") == schemas.LogsQuery().tail == 200


def test_the_v2_body_fields_are_the_ones_core_checks():
    assert V2_FIELDS == set(JobRequest.model_fields)
    op = DOC["paths"]["/sagemaker/v2/{environment}/api/v2/jobs"]["post"]
    assert set(resolve(op["requestBody"]["content"]["application/json"]["schema"])["properties"]) == V2_FIELDS


def test_the_error_envelope_is_the_model():
    error = DOC["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert set(resolve(error["properties"]["error"])["required"]) == {"code", "message"}


def test_every_route_has_a_written_summary():
    assert {(m, p) for m, p, _ in routes()} == set(openapi.SUMMARIES)
