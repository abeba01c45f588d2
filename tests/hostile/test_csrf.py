"""Cross-site requests against every server the project starts: each route of the extension that changes
state, as a web page on another origin (or one reached under a rebinding host name) would send it, is
refused before its handler runs; the worker's door is in test_worker_doors."""

from __future__ import annotations

import re

import pytest
import requests
from comfyui_sagemaker.server_routes import ROUTE_TABLES

pytestmark = pytest.mark.comfyui

CHANGES = sorted({(method, path) for table in ROUTE_TABLES for method, path, _ in table
                  if method in ("POST", "PUT", "DELETE")})
VALUES = {"name": "Csrf1", "id": "20990101T000000000000-00000000", "folder": "loras", "tail": "x"}


def url_of(base: str, path: str) -> str:
    return base + "/sagemaker" + re.sub(r"\{(\w+)\}", lambda m: VALUES.get(m.group(1), "x"), path)


@pytest.mark.parametrize("method, path", CHANGES, ids=[f"{m} {p}" for m, p in CHANGES])
def test_a_cross_origin_page_is_refused_on_every_change(comfyui, method, path):
    before = requests.get(comfyui.url + "/sagemaker/templates", timeout=30).json()
    port = comfyui.url.rsplit(":", 1)[1]
    for headers in ({"Origin": "http://evil.example", "Content-Type": "text/plain"},
                    {"Origin": "null", "Content-Type": "application/x-www-form-urlencoded"},
                    {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}):
        r = requests.request(method, url_of(comfyui.url, path), headers=headers, timeout=30,
                             data='{"name": "Csrf1", "workflow": {}, "prompt": {}, "enabled": false}')
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (headers, r.text)
    assert requests.get(comfyui.url + "/sagemaker/templates", timeout=30).json() == before
