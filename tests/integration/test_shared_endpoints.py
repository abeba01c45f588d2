"""A designer's shared local endpoint is the team's, without AWS: four ComfyUIs on one folder store (the designer
who shares, two artists, a second designer). The artists list it (shared, whose) and run on it; its worker refuses
whoever comes without the token; the second designer stops it from their ComfyUI and it is gone everywhere.
The registry's rules (what an entry holds and keeps out, heartbeat expiry, the router's choice) are
tests/unit/test_shared_endpoints.py's."""

from __future__ import annotations

import pytest
import requests
from harness.comfyui import ComfyUI
from harness.envs import publish_environment, wait_endpoint, wait_execution
from harness.waiting import wait_for

pytestmark = pytest.mark.comfyui


def plain(color: int) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 2, "batch_size": 1, "color": color}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "shared"}}}


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    base = tmp_path_factory.mktemp("shared-team")
    # One folder store for all; the designer's shared workers listen on 127.0.0.1 here (a LAN address in a studio).
    env = {"COMFYUI_SAGEMAKER_STORE_PATH": str(base / "store"), "COMFYUI_SAGEMAKER_SHARE_HOST": "127.0.0.1"}
    servers: dict[str, ComfyUI] = {}
    try:
        for who, role in (("designer", "designer"), ("ana", "artist"), ("ben", "artist"), ("dee", "designer")):
            servers[who] = ComfyUI(base / who, env={**env, "COMFYUI_SAGEMAKER_ROLE": role,
                                                    "COMFYUI_SAGEMAKER_DISPLAY_NAME": who}).start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def test_artists_run_on_a_designers_shared_endpoint_and_another_designer_stops_it(team):
    designer, ana, ben, dee = (team[who].client() for who in ("designer", "ana", "ben", "dee"))
    template, env, _ = publish_environment(designer, plain(1), endpoint={"kind": "local", "shared": True})
    assert designer.put(f"/sagemaker/templates/{template}", json={"environment": env}).status_code == 200
    own = wait_endpoint(designer, env)
    assert own["state"] == "InService" and own["shared"] is True, own

    for artist, color in ((ana, 0x204060), (ben, 0x406080)):
        # Its owner's watcher writes the InService state it just saw at its next turn.
        seen = wait_for(lambda artist=artist: [e for e in artist.get("/sagemaker/endpoints").json()["endpoints"]
                                               if e["name"] == env and e["state"] == "InService"],
                        what="the shared endpoint in service in an artist's list")[0]
        assert seen["shared"] is True and seen["owner"] == "designer", seen
        assert "token" not in str(seen)
        r = artist.post("/sagemaker/executions", json={"prompt": plain(color), "template": template})
        assert r.status_code == 202, r.text
        record = wait_execution(artist, r.json()["execution_id"], 120)
        assert record["state"] == "succeeded", record

    # The worker beyond loopback admits only the team: no token, a wrong one, a browser page: refused.
    url = own["url"]
    for headers in ({}, {"X-Worker-Token": "x" * 43}, {"Origin": "http://evil.example"}):
        assert requests.get(url + "/status", headers=headers, timeout=10).status_code == 403
        r = requests.post(url + "/invocations", json={"prompt": plain(1)}, headers=headers, timeout=10)
        assert r.status_code == 403, r.text

    r = dee.post(f"/sagemaker/endpoints/{env}/stop")
    assert r.status_code == 200 and r.json()["state"] == "Stopping", r.text
    assert wait_endpoint(designer, env, states=("Stopped",), timeout=60)["stopped_by"] == "dee"
    for other in (ana, ben, dee):
        assert wait_for(lambda other=other: other.get(f"/sagemaker/endpoints/{env}").status_code == 404,
                        what="the stopped shared endpoint gone from another ComfyUI")
    r = ana.post("/sagemaker/executions", json={"prompt": plain(3), "template": template})
    assert r.status_code == 409 and "ask a designer to deploy or share one" in r.json()["error"]["message"], r.text
    with pytest.raises(requests.ConnectionError):  # the worker is gone
        requests.get(url + "/ping", timeout=10)
