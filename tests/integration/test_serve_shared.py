"""An on-premises GPU machine serves the team with no ComfyUI in front: `worker serve ENV --share` on the session
ComfyUI's folder store (real processes: the serving process, its worker, the worker's ComfyUI). The ComfyUI lists
it (shared, whose) and runs on it; a designer stops it from the ComfyUI and the serving process sees the stop in
the store, stops its worker, withdraws the entry and exits. The rules (where it listens, the address the team is
told, the asks a serving owner carries out) are tests/unit/test_serve_on_premises.py's and test_shared_redeploy.py's.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import requests
from conftest import WORKER_PROMPT
from harness.comfyui import ROOT, comfyui_dir
from harness.envs import wait_execution
from harness.waiting import wait_for

pytestmark = pytest.mark.comfyui


def test_a_machine_without_comfyui_serves_the_team_and_a_designer_stops_it(integration_comfyui, worker_environment,
                                                                         tmp_path):
    env, _ = worker_environment
    client = integration_comfyui.client()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        # The ComfyUI's own configuration folder names the store; listening on loopback here (a LAN address, or
        # every address by default, in a studio).
        serving = subprocess.Popen(
            [sys.executable, str(ROOT), "worker", "serve", env, "--share", "--host", "127.0.0.1", "--name", "gpu-box",
             "--config-dir", str(integration_comfyui.user_dir / "__sagemaker"), "--state-dir", str(tmp_path / "state"),
             "--comfyui-dir", str(comfyui_dir()), "--comfyui-args=--cpu"], stdout=out, stderr=subprocess.STDOUT)
    try:
        def listed() -> list[dict]:
            assert serving.poll() is None, log.read_text(errors="replace")
            return [e for e in client.get("/sagemaker/endpoints").json()["endpoints"]
                    if e["name"] == env and e["state"] == "InService"]

        seen = wait_for(listed, timeout=300, what="the served endpoint in service in the ComfyUI's list")[0]
        assert seen["shared"] is True and seen["owner"] == "gpu-box" and seen["url"].startswith("http://127.0.0.1:")
        assert "token" not in str(seen)

        r = client.post("/sagemaker/executions", json={"prompt": WORKER_PROMPT, "environment": env})
        assert r.status_code == 202, r.text
        record = wait_execution(client, r.json()["execution_id"], 120)
        assert record["state"] == "succeeded" and record["environment_version"] == seen["version"], record

        r = client.post(f"/sagemaker/endpoints/{env}/stop")
        assert r.status_code == 200 and r.json()["state"] == "Stopping", r.text
        assert serving.wait(timeout=120) == 0, log.read_text(errors="replace")
        said = log.read_text(errors="replace")
        assert f"endpoint {env} stopped by " in said, said
        assert client.get(f"/sagemaker/endpoints/{env}").status_code == 404
        with pytest.raises(requests.ConnectionError):  # its worker is gone with it
            requests.get(seen["url"] + "/ping", timeout=10)
    finally:
        if serving.poll() is None:
            serving.send_signal(signal.SIGTERM)
            serving.wait(timeout=120)
