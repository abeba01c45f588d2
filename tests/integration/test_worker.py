"""The worker program against the real ComfyUI install: materialise, /ping, /invocations."""

import hashlib
import io
import json
import threading

import pytest
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.images import pixels, png
from harness.prompts import scale_prompt
from harness.waiting import wait_for
from harness.worker import WorkerProcess

pytestmark = pytest.mark.comfyui


@pytest.fixture(scope="module")
def store(comfyui):
    return FolderStore(comfyui.user_dir / "__sagemaker" / "store")


@pytest.fixture(scope="module")
def environment(worker_environment):
    """(name, manifest URI) of an environment with the test pack and its lora (tests/conftest.py)."""
    return worker_environment


@pytest.fixture(scope="module")
def worker(shared_worker):
    """The session's worker of that environment (tests/conftest.py), idle."""
    return shared_worker.take()


def put_input(store, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    store.put(f"blobs/sha256/{digest}", data)
    return digest


def output_pixels(store, result, node="3"):
    item = result["outputs"][node]["images"][0]
    data = store.get(f"blobs/sha256/{item['sha256']}").data
    assert hashlib.sha256(data).hexdigest() == item["sha256"]
    return pixels(data)


def close(px, expected):
    return all(abs(a - b) <= 1 for a, b in zip(px, expected, strict=True))


def test_ping_and_materialised_environment(worker, environment):
    assert worker.ping() == 200
    status = worker.status()
    assert status["environment"]["name"] == environment[0]
    base = worker.root / "base"
    assert (base / "custom_nodes" / "sm_test_pack" / "__init__.py").exists()
    assert (base / "models" / "loras" / "style.safetensors").read_bytes() == b"lora bytes"
    assert status["materialise"]["downloaded_blobs"] == 2  # the pack archive and the lora


def test_invocation_with_the_packs_node_pixels_checked(worker, store):
    digest = put_input(store, png(4, 4, (200, 100, 50)))
    r = worker.invoke({"execution_id": "e1", "prompt": scale_prompt("in1.png", 0.5, "e1"),
                       "inputs": {"in1.png": digest}})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["status"] == "succeeded" and result["execution_id"] == "e1"
    assert all(close(px, (100, 50, 25)) for px in output_pixels(store, result))
    assert result["timings"]["run_ms"] > 0


def test_no_model_workflow_streams_events_then_result(worker, store):
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1,
                                                           "color": 0x102030}},
              "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
              "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "stream"}}}
    r = worker.invoke({"execution_id": "e2", "prompt": prompt, "inputs": {}}, stream=True)
    assert r.headers["Content-Type"].startswith("application/x-ndjson")
    lines = worker.lines(r)
    types = [ln["type"] for ln in lines]
    assert types[0] == "execution_start" and "executed" in types and types[-2:] == ["execution_success", "result"]
    result = lines[-1]["data"]
    assert all(close(px, (255 - 0x10, 255 - 0x20, 255 - 0x30)) for px in output_pixels(store, result))


def test_two_prompts_at_once_are_queued_and_both_succeed(worker, store, tmp_path):
    """The worker has one ComfyUI: a second prompt sent while the first is held waits in the worker's queue
    (an ordering, seen in /status), then runs once the first is released; both succeed."""
    digest = put_input(store, png(4, 4, (10, 20, 30)))
    release = tmp_path / "release"
    results = {}

    def run(i, wait_for=None):
        body = {"execution_id": f"q{i}", "prompt": scale_prompt("q.png", 0.2 + i / 10, f"q{i}", wait_for, 300),
                "inputs": {"q.png": digest}}
        results[i] = worker.invoke(body, timeout=300).json()

    first = threading.Thread(target=run, args=(0, str(release)))
    second = threading.Thread(target=run, args=(1,))
    try:
        first.start()
        wait_for(lambda: [c["execution"] for c in worker.status()["comfyuis"]] == ["q0"], what="the first running")
        second.start()
        wait_for(lambda: worker.status()["queue"] == ["q1"], what="the second queued behind the held first")
        assert 0 not in results and 1 not in results  # neither ends while the first is held
    finally:
        release.write_text("go")
        first.join(300)
        second.join(300)
    assert [results[i]["status"] for i in (0, 1)] == ["succeeded", "succeeded"], results
    assert results[1]["timings"]["queued_ms"] > 0  # it did wait: the worker reports the time it queued
    assert worker.status()["queue"] == []


def test_bad_requests(worker, store):
    import requests

    r = requests.post(worker.url + "/invocations", data=b"{not json", headers=worker.headers, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
    r = worker.invoke({"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}})
    assert r.status_code == 400 and "NoSuchNode" in r.json()["error"]["message"]
    assert "environment" in r.json()["error"]["message"]
    r = requests.post(worker.url + "/invocations", data=b"{" + b" " * (7 * 1024 * 1024) + b"}", headers=worker.headers,
                      timeout=120)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    r = worker.invoke({"prompt": scale_prompt("x.png"), "inputs": {"x.png": "0" * 64}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "input_missing"
    r = worker.invoke({"prompt": scale_prompt("x.png"), "inputs": {"../x.png": put_input(store, png())}})
    assert r.status_code == 400


def test_failing_node_reports_node_id_type_and_message(worker, store):
    digest = put_input(store, png(4, 4, (1, 2, 3)))
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "f.png"}},
              "2": {"class_type": "SMTestFail", "inputs": {"image": ["1", 0], "message": "broken on purpose"}},
              "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "f"}}}
    result = worker.invoke({"execution_id": "f", "prompt": prompt, "inputs": {"f.png": digest}}).json()
    assert result["status"] == "failed"
    err = result["error"]
    assert (err["code"], err["node_id"], err["node_type"]) == ("node_error", "2", "SMTestFail")
    assert "broken on purpose" in err["message"]


def test_invalid_prompt_is_400_with_comfyuis_reasons(worker):
    r = worker.invoke({"prompt": scale_prompt("missing-file.png")})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "prompt_invalid" and "missing-file.png" in json.dumps(r.json())


def test_second_start_with_warm_cache_downloads_nothing(worker, environment, tmp_path):
    again = WorkerProcess(environment[1], worker.root, {}).start()  # same cache and base
    try:
        status = again.wait_state()
        assert status["state"] == "ready" and status["materialise"]["downloaded_blobs"] == 0
    finally:
        again.stop()


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_bad_manifest_keeps_ping_503_with_a_reason(store, tmp_path, problem):
    key = f"environments/broken{problem}/versions/v000001.json"
    if problem == "corrupt":
        store.put(key, b"{not a manifest")
    uri = f"{store.root.resolve().as_uri()}/{key}"
    w = WorkerProcess(uri, tmp_path / "w").start()
    try:
        status = w.wait_state(("failed",))
        assert w.ping() == 503
        assert ("not found" if problem == "missing" else "corrupt") in status["reason"]
    finally:
        w.stop()


def test_output_files_of_other_ui_keys_are_stored(worker, store):
    # Any ui key whose items are files is stored, not only "images": PreviewImage writes to temp.
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 7}},
              "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    result = worker.invoke({"prompt": prompt}).json()
    item = result["outputs"]["2"]["images"][0]
    assert item["type"] == "temp" and store.size(f"blobs/sha256/{item['sha256']}") == item["size"]
    assert io.BytesIO(store.get(f"blobs/sha256/{item['sha256']}").data).read(8).startswith(b"\x89PNG")


def test_lazy_models_are_fetched_just_before_the_prompt_that_needs_them(environment, store, tmp_path):
    lazy = WorkerProcess(environment[1], tmp_path / "lazy", {"WORKER_MODELS": "lazy"}).start()
    try:
        assert lazy.wait_state()["state"] == "ready"
        lora = tmp_path / "lazy" / "base" / "models" / "loras" / "style.safetensors"
        assert not lora.exists()  # nothing fetched at start
        digest = put_input(store, png(4, 4, (200, 100, 50)))
        r = lazy.invoke({"execution_id": "lz", "prompt": scale_prompt("lz.png", 0.5, "lz"),
                         "inputs": {"lz.png": digest}})
        assert r.json()["status"] == "succeeded", r.text
        assert lora.read_bytes() == b"lora bytes"
    finally:
        lazy.stop()
