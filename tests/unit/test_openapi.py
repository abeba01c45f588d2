"""The OpenAPI document of the extension's routes: valid OpenAPI 3.1, every route in it, and each request
body saying exactly the fields its handler accepts (the handlers' own field sets, so they cannot drift)."""

from __future__ import annotations

from comfyui_sagemaker.core.v2 import jobs_v2
from comfyui_sagemaker.server_routes import ROUTE_TABLES, environments, executions, openapi, template_runs, templates
from openapi_spec_validator import validate

# POSTs that act on the path alone (a body is not read).
NO_BODY = {("POST", "/tasks/{id}/cancel"), ("POST", "/jobs/{id}/cancel"),
           ("POST", "/executions/{id}/cancel"), ("POST", "/inputs/scan"),
           ("POST", "/endpoints/{name}/stop"), ("POST", "/endpoints/{name}/start"),
           ("POST", "/v2/{environment}/api/v2/jobs/{id}/cancel"), ("POST", "/config/reload")}


def routes():
    return [(method, openapi.openapi_path(path)[len("/sagemaker"):]) for table in ROUTE_TABLES
            for method, path, _ in table]


def test_the_document_is_valid_openapi_and_lists_every_route():
    doc = openapi.document(ROUTE_TABLES)
    validate(doc)  # raises on an invalid document
    for method, path in routes():
        op = doc["paths"]["/sagemaker" + path][method.lower()]
        assert op["summary"] and op["operationId"], (method, path)
        if method in ("POST", "PUT") and (method, path) not in NO_BODY:
            assert (method, path) in openapi.BODIES, f"{method} {path} has no request body in the document"


def test_each_body_lists_the_fields_its_handler_accepts():
    def fields(method, path):
        return set(openapi.BODIES[(method, path)][1]["properties"])

    assert fields("POST", "/templates") == templates.FIELDS
    assert fields("PUT", "/templates/{name}") == templates.UPDATE_FIELDS
    assert fields("POST", "/environments") == environments.PUBLISH_FIELDS
    assert fields("POST", "/executions") == executions.FIELDS
    assert fields("POST", "/templates/{name}/executions") == template_runs.FIELDS
    assert fields("POST", "/templates/{name}/prompt") == template_runs.PROMPT_FIELDS
    assert fields("POST", "/v2/{environment}/api/v2/jobs") == jobs_v2.FIELDS
    assert all(key in set(routes()) for key in openapi.BODIES), "a body for a route that does not exist"
    assert all(key in set(routes()) for key in openapi.QUERIES), "a query for a route that does not exist"


def test_every_route_has_a_written_summary():
    assert {key for key in routes()} == set(openapi.SUMMARIES)
