"""Shared local endpoints as an attacker who can write the store, or stands on the network, sees them: entries and
tokens that are not what they claim are treated as absent, a stop marker names nobody it should not, and a
shared worker's answer cannot lead the token elsewhere (no redirect is followed). The worker's own door, which
refuses any caller without the token, is tried on a real shared endpoint in
tests/integration/test_shared_endpoints.py and on the session's worker in test_worker_doors.py. All on
127.0.0.1."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from comfyui_sagemaker.core.endpoints import EndpointNotReady
from comfyui_sagemaker.core.shared_registry import SharedRegistry, entry_key, stop_key, token_key
from comfyui_sagemaker.local.folder_store import FolderStore
from comfyui_sagemaker.local.shared_endpoints import SharedEndpoints

TOKEN = "t" * 43


@pytest.fixture
def store(tmp_path):
    return FolderStore(tmp_path / "store")


@pytest.fixture
def clock():
    return lambda: 1_800_000_000.0


def share(registry: SharedRegistry, url: str = "http://127.0.0.1:8301") -> None:
    registry.beat("Env1", 3, "InService", url, "i-designer", "designer", TOKEN)


@pytest.mark.parametrize("entry", [
    {"url": "http://user:secret@127.0.0.1:8301"},  # user info could carry a credential elsewhere
    {"url": "http://127.0.0.1:8301/path"},
    {"url": "file:///etc/passwd"},
    {"heartbeat_at": "yesterday"},
    {"heartbeat_at": "2026-01-01T00:00:00"},  # no zone: cannot be compared across machines
    {"name": "Other"},  # another environment's entry copied here
    {"version": "3"},
    {"owner": None},
])
def test_an_entry_that_is_not_one_is_absent(store, clock, entry):
    registry = SharedRegistry(store, clock)
    share(registry)
    good = json.loads(store.get(entry_key("Env1")).data)
    store.put(entry_key("Env1"), json.dumps({**good, **entry}).encode())
    assert registry.entry("Env1") is None and registry.entries() == []
    assert SharedEndpoints(registry, "i-ana", "ana").list() == []


@pytest.mark.parametrize("token", ["short", "has space" * 5, "x" * 300, 42, None])
def test_a_token_that_is_not_one_is_none(store, clock, token):
    registry = SharedRegistry(store, clock)
    share(registry)
    store.put(token_key("Env1"), json.dumps({"token": token}).encode())
    assert registry.token("Env1") is None
    with pytest.raises(EndpointNotReady, match="token"):
        SharedEndpoints(registry, "i-ana", "ana")._headers("Env1")


def test_a_hostile_stop_marker_still_stops_and_names_nobody_it_should_not(store, clock):
    registry = SharedRegistry(store, clock)
    store.put(stop_key("Env1"), b"\x00not json")
    assert registry.stop_asked("Env1") == {"by": "a designer", "at": ""}
    store.put(stop_key("Env1"), json.dumps({"by": "\u202eevil\n" + "x" * 200, "at": ""}).encode())
    assert registry.stop_asked("Env1")["by"] == ("evil" + "x" * 200)[:64]


class Recorder:
    """Two servers on 127.0.0.1: `worker` answers every POST with a redirect to `elsewhere`, which records the
    headers it is sent."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        recorder = self

        class Elsewhere(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                recorder.seen.append(dict(self.headers))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.elsewhere = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
        target = f"http://127.0.0.1:{self.elsewhere.server_address[1]}/invocations"

        class Worker(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(307)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.worker = ThreadingHTTPServer(("127.0.0.1", 0), Worker)
        self.url = f"http://127.0.0.1:{self.worker.server_address[1]}"
        for server in (self.elsewhere, self.worker):
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def close(self) -> None:
        for server in (self.elsewhere, self.worker):
            server.shutdown()
            server.server_close()


def test_a_shared_workers_redirect_never_carries_the_token_elsewhere(store, clock):
    recorder = Recorder()
    try:
        registry = SharedRegistry(store, clock)
        share(registry, recorder.url)
        result = SharedEndpoints(registry, "i-ana", "ana").invoke("Env1", {"execution_id": "x1", "prompt": {}},
                                                                  lambda event: None)
        assert result["status"] == "failed" and recorder.seen == []
    finally:
        recorder.close()
