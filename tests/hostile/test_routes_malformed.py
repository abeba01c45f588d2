"""Malformed ids, query values and bodies on the extension's routes: a 4xx JSON error naming the problem,
never a 500, and at most one line in ComfyUI's log (no traceback)."""

from __future__ import annotations

import pytest
import requests

pytestmark = pytest.mark.comfyui

NESTED = b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}"

CASES = [
    # (method, path, body, expected status)
    ("GET", "/sagemaker/executions/%C3%A9t%C3%A9", None, 404),  # non-ASCII letters pass str.isalnum()
    ("GET", "/sagemaker/executions/%D9%A3%D9%A3", None, 404),
    ("GET", "/sagemaker/executions/..%2F..%2Fconfig", None, 404),
    ("POST", "/sagemaker/executions/%00/cancel", b"{}", 404),
    ("GET", "/sagemaker/tasks/%C3%A9", None, 404),
    ("GET", "/sagemaker/templates/%C3%A9", None, 400),
    ("GET", "/sagemaker/environments/a%0D%0Ab", None, 400),
    ("DELETE", "/sagemaker/endpoints/%2E%2E", None, 400),
    ("GET", "/sagemaker/executions?limit=%C2%B2", None, 400),  # "²".isdigit() is True, int("²") fails
    ("GET", "/sagemaker/executions?limit=-1", None, 400),
    ("GET", "/sagemaker/executions?limit=99999", None, 400),
    ("GET", "/sagemaker/executions?state=%0D%0A", None, 400),
    ("GET", "/sagemaker/environments/Nope?version=-1", None, 400),
    ("GET", "/sagemaker/environments/Nope?version=%C2%B2", None, 400),
    ("GET", "/sagemaker/endpoints/Nope/logs?tail=99999", None, 400),
    ("POST", "/sagemaker/templates", NESTED, 400),
    ("POST", "/sagemaker/executions", NESTED, 400),
    ("POST", "/sagemaker/names/check", "\u00e9t\u00e9".encode("latin-1"), 400),
    ("POST", "/sagemaker/templates", b"", 400),
    ("POST", "/sagemaker/templates", b"[1]", 400),
    ("POST", "/sagemaker/templates", b"{" + b" " * (16 * 1024 * 1024) + b"}", 413),  # one byte over
    ("POST", "/sagemaker/templates", b"{" + b" " * (16 * 1024 * 1024 - 2) + b"}", 400),  # at the limit: read
]


@pytest.mark.parametrize("method, path, body, status", CASES, ids=[f"{c[0]} {c[1][11:60]}" for c in CASES])
def test_malformed_requests_are_4xx_json_with_one_log_line(comfyui, method, path, body, status):
    before = comfyui.log()
    r = requests.request(method, comfyui.url + path, data=body, timeout=60,
                         headers={"Content-Type": "application/json"} if body is not None else {})
    assert r.status_code == status, (r.status_code, r.text[:300])
    error = r.json()["error"]
    assert error["code"] and error["message"]
    added = comfyui.log()[len(before):]
    assert "Traceback" not in added and added.count("\n") <= 1, added[-2000:]
