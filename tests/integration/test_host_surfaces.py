"""On the pinned ComfyUI the host adapters (comfy_queue.py, comfy_interrupt.py) find the shapes they know, and
/sagemaker/health says so; tests/unit/test_host_adapters.py feeds them older and newer shapes."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.comfyui


def test_health_says_the_pinned_comfyuis_queue_and_interrupt_are_the_known_shapes(client):
    health = client.get("/sagemaker/health").json()
    assert health["comfyui_version"] == "0.3.75"
    assert health["host"] == {"queue": "ok", "interrupt": "ok"}
