"""The Endpoints contract (core/endpoints.py) as callers rely on it, checked the same way on the in-process
FakeEndpoints (tests/harness/fake_endpoints.py, which the services' unit tests run on) and on LocalEndpoints
with a real worker (marked comfyui: it starts a worker and its headless ComfyUI, once for the module): the fake
cannot drift from the real one. Orderings, never timings: a run is held open by the test pack's SMTestWait
until its signal file exists."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import uuid
from pathlib import Path

import pytest
from comfyui_sagemaker.core import cancel_tokens
from comfyui_sagemaker.core.endpoints import (
    EndpointNotFound,
    EndpointNotReady,
    EndpointStateConflict,
    InvocationFailed,
    RunUnknown,
)
from comfyui_sagemaker.core.store import blob_key
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.fake_endpoints import FakeEndpoints
from harness.images import png
from harness.waiting import wait_for

WAIT = 600  # s an SMTestWait holds a run at most; every test releases its own


class Provider:
    """One implementation under test, its endpoint deployed: what the checks need to drive it."""

    def __init__(self, endpoints, store: FolderStore, manifest: dict, signals: Path, publish):
        self.endpoints, self.store, self.manifest, self.signals = endpoints, store, manifest, signals
        self.name = manifest["name"]
        self.publish = publish  # name -> the manifest of another environment
        self.changes: list[dict] = []
        self.deployed: dict | None = None
        self.early: Exception | None = None  # what an invocation got before the endpoint was in service

    def signal(self) -> Path:
        return self.signals / uuid.uuid4().hex

    def kill(self) -> None:
        """The worker dies (SIGKILL for a real one)."""
        if isinstance(self.endpoints, FakeEndpoints):
            self.endpoints.kill(self.name)
            return
        state = json.loads((self.endpoints.root / self.name.lower() / "state.json").read_text())
        os.killpg(state["pid"], signal.SIGKILL)

    def state(self, name: str | None = None) -> str:
        return self.endpoints.get(name or self.name)["state"]

    def wait_state(self, *states: str, timeout: float = 180) -> dict:
        return wait_for(lambda: (e := self.endpoints.get(self.name))["state"] in states and e, timeout,
                        f"endpoint {self.name} {' or '.join(states)}")


def plain(color: int | None = None) -> dict:
    """EmptyImage -> ImageInvert -> SaveImage; a colour of its own, so ComfyUI's cache never answers it."""
    color = uuid.uuid4().int % 0xFFFFFF if color is None else color
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": color}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "contract"}}}


def held(signal_file: Path) -> dict:
    p = plain()
    p["2"] = {"class_type": "SMTestWait", "inputs": {"image": ["1", 0], "signal": str(signal_file), "timeout": WAIT}}
    return p


def body(prompt: dict, token: str | None = None, inputs: dict | None = None) -> dict:
    out = {"execution_id": f"contract-{uuid.uuid4().hex[:12]}", "prompt": prompt, "inputs": inputs or {}}
    if token is not None:
        out[cancel_tokens.DIGEST_FIELD] = cancel_tokens.digest_of(token)
    return out


class Events(list):
    """A run's events as its invoker gets them (an on_event); the endpoint's own word that it can answer the run to
    another follower (sagemaker.resumable, before any of them) kept aside, in `said`."""

    def __init__(self):
        super().__init__()
        self.said: list[dict] = []

    def __call__(self, event: dict) -> None:
        (self.said if event["type"] == "sagemaker.resumable" else self).append(event)


class Gone(Exception):
    """The invoker stopped listening: its process died (its connection to the endpoint closes)."""


class Invocation:
    """An invocation in a thread of its own (invoke blocks), its events as they come. `leave_at`: the invoker
    goes away once an event of that type (for `executing`, of that node) has come."""

    def __init__(self, provider: Provider, request: dict, leave_at: str | None = None):
        self.request = request
        self.events = Events()
        self.result: dict | None = None
        self.error: Exception | None = None
        self.leave_at = leave_at
        self.thread = threading.Thread(target=self._run, args=(provider,), daemon=True)
        self.thread.start()

    def _take(self, event: dict) -> None:
        self.events(event)
        node = (event.get("data") or {}).get("node") if event["type"] == "executing" else None
        if self.leave_at is not None and self.leave_at in (event["type"], node):
            raise Gone()

    def _run(self, provider: Provider) -> None:
        try:
            self.result = provider.endpoints.invoke(provider.name, self.request, self._take)
        except Exception as err:
            self.error = err

    def resume(self) -> dict:
        """What the endpoint said it needs to answer the run to another follower, once it accepted it."""
        said = self.events.said
        assert said, f"the endpoint never said the run can be followed: {self.types()}"
        return said[0]["data"]["resume"]

    def reached(self, node: str, timeout: float = 120) -> None:
        wait_for(lambda: any(e["type"] == "executing" and (e.get("data") or {}).get("node") == node
                             for e in list(self.events)) or not self.thread.is_alive(), timeout, f"node {node} running")
        assert self.thread.is_alive(), (self.result, self.error)

    def end(self, timeout: float = 120) -> dict:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the invocation never ended"
        if self.error is not None:
            raise self.error
        return self.result

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


# the two implementations

def _fake(tmp: Path) -> Provider:
    store = FolderStore(tmp / "store")
    fake = FakeEndpoints(store, hold_starts=True)
    name = "Contract" + uuid.uuid4().hex[:6]
    p = Provider(fake, store, {"name": name, "version": 1, "endpoint": {"kind": "local"}}, tmp / "signals",
                 lambda other: {"name": other, "version": 1, "endpoint": {"kind": "local"}})
    fake.on_change = p.changes.append
    return p


def _local(tmp: Path) -> Provider:
    """A folder store holding an environment with the test pack (published in-process, no ComfyUI), and
    LocalEndpoints starting real workers on this machine's ComfyUI."""
    import shutil

    from comfyui_sagemaker.core import snapshot
    from comfyui_sagemaker.core.environments import EnvironmentService
    from comfyui_sagemaker.core.fs.hashing import HashCache
    from comfyui_sagemaker.core.model_files import scan
    from comfyui_sagemaker.core.tasks import TaskManager
    from comfyui_sagemaker.core.templates import TemplateService
    from comfyui_sagemaker.local.endpoints import LocalEndpoints, WorkerRuntime
    from harness.comfyui import ROOT, comfyui_dir
    from harness.fixtures import FIXTURES, TEST_PACK

    comfy = tmp / "comfy"
    shutil.copytree(FIXTURES / TEST_PACK, comfy / "custom_nodes" / TEST_PACK,
                    ignore=shutil.ignore_patterns("__pycache__"))

    class PackHost:
        """The test pack in custom_nodes, no models: what the publish packs."""

        def snapshot(self):
            return snapshot.take(snapshot.SnapshotFacts("0.3.75", (str(comfy / "custom_nodes"),), {}, "/nonexistent"))

        def model_index(self):
            return scan({})

        def node_types_by_pack(self):
            return {TEST_PACK: ["SMTestScale", "SMTestFail", "SMTestWait", "SMTestPreview"]}

        def analyze(self, workflow):
            raise AssertionError("include=all never analyzes")

    store = FolderStore(tmp / "store")
    environments = EnvironmentService(store, TemplateService(store, lambda n: False), PackHost(), TaskManager(),
                                      HashCache(tmp / "hash-cache.json"), 4)

    def publish(name: str) -> dict:
        task = environments.publish(name, include="all", endpoint={"kind": "local"})
        assert environments.tasks.wait(task.id, 120).state == "succeeded", task.to_json()
        return environments.get(name)

    p = Provider(None, store, publish("Contract" + uuid.uuid4().hex[:6]), tmp / "signals", publish)
    p.endpoints = LocalEndpoints(tmp / "state", store.root.resolve().as_uri(),
                                 WorkerRuntime(comfyui_dir(), "--cpu", ROOT), on_change=p.changes.append)
    return p


@pytest.fixture(scope="module", params=["fake", pytest.param("local", marks=pytest.mark.comfyui)])
def provider(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"contract-{request.param}")
    p = _fake(tmp) if request.param == "fake" else _local(tmp)
    p.signals.mkdir()
    try:
        p.deployed = p.endpoints.deploy(p.manifest)
        try:
            p.endpoints.invoke(p.name, body(plain()), lambda event: None)
        except Exception as err:
            p.early = err
        if isinstance(p.endpoints, FakeEndpoints):
            p.endpoints.hold_starts = False
            p.endpoints.ready(p.name)
        assert p.wait_state("InService", "Failed")["state"] == "InService", p.endpoints.logs(p.name)
        yield p
    finally:
        if isinstance(p.endpoints, FakeEndpoints):
            p.endpoints.close()
        else:
            p.endpoints.stop_all()


@pytest.fixture
def signals(provider):
    """Signal files of this test, all created at its end: nothing it held stays held."""
    made: list[Path] = []

    def make() -> Path:
        made.append(provider.signal())
        return made[-1]

    yield make
    for path in made:
        path.touch()


# the checks

def test_deploy_answers_at_once_and_the_endpoint_comes_into_service(provider):
    p = provider
    assert p.deployed["state"] == "Creating" and p.deployed["name"] == p.name
    assert p.deployed["kind"] == "local" and p.deployed["environment"] == p.name and p.deployed["version"] == 1
    assert isinstance(p.early, EndpointNotReady) and "Creating" in p.early.message  # nothing was sent
    # The InService event is sent once the state is written: a reader of the state may be there first.
    wait_for(lambda: "InService" in [c["state"] for c in p.changes if c.get("name") == p.name])
    states = [c["state"] for c in p.changes if c.get("name") == p.name]
    assert states[0] == "Creating" and "InService" in states
    assert p.endpoints.get(p.name.upper())["state"] == "InService"  # names ignore case
    assert [e["name"] for e in p.endpoints.list() if e["name"] == p.name] == [p.name]
    # The same version deployed again: the endpoint that serves it answers, nothing restarts.
    assert p.endpoints.deploy(p.manifest)["state"] == "InService"
    with pytest.raises(EndpointNotFound):
        p.endpoints.get("NoSuchEnv1")


def test_a_run_relays_comfyuis_events_in_order_and_its_files_are_in_the_store(provider):
    p = provider
    events = Events()
    request = body(plain(), cancel_tokens.new_token())
    result = p.endpoints.invoke(p.name, request, events)
    types = [e["type"] for e in events]
    assert types[0] == "execution_start" and types[-1] == "execution_success", types
    assert "executing" in types and "status" not in types
    assert types.index("executed") < types.index("execution_success")
    assert len({e["data"]["prompt_id"] for e in events}) == 1  # one prompt's events
    executed = next(e["data"] for e in events if e["type"] == "executed")
    assert executed["node"] == "3"
    item = executed["output"]["images"][0]
    data = p.store.get(blob_key(item["sha256"])).data
    assert hashlib.sha256(data).hexdigest() == item["sha256"] and item["size"] == len(data)
    assert item["type"] == "output" and item["filename"].startswith("contract")
    assert result["status"] == "succeeded" and result["execution_id"] == request["execution_id"]
    assert result["outputs"]["3"]["images"][0] == item and "error" not in result


def test_a_node_that_fails_fails_the_run_with_its_message(provider):
    p = provider
    prompt = plain()
    prompt["2"] = {"class_type": "SMTestFail", "inputs": {"image": ["1", 0], "message": "contract boom"}}
    events = Events()
    result = p.endpoints.invoke(p.name, body(prompt), events)
    assert events[-1]["type"] == "execution_error", [e["type"] for e in events]
    assert events[-1]["data"]["node_id"] == "2" and "contract boom" in events[-1]["data"]["exception_message"]
    assert result["status"] == "failed" and result["outputs"] == {}
    assert result["error"]["code"] == "node_error" and result["error"]["node_id"] == "2"
    assert "contract boom" in result["error"]["message"]


def test_inputs_come_from_the_store_by_digest(provider):
    p = provider
    data = png(3, 2, (10, 20, uuid.uuid4().int % 256))
    digest = hashlib.sha256(data).hexdigest()
    p.store.put(blob_key(digest), data)
    prompt = plain()
    prompt["1"] = {"class_type": "LoadImage", "inputs": {"image": "contract-in.png"}}
    result = p.endpoints.invoke(p.name, body(prompt, inputs={"contract-in.png": digest}), lambda e: None)
    assert result["status"] == "succeeded", result
    events = Events()
    absent = hashlib.sha256(b"not in the store " + uuid.uuid4().bytes).hexdigest()
    result = p.endpoints.invoke(p.name, body(prompt, inputs={"contract-in.png": absent}), events)
    assert result["status"] == "failed" and result["error"]["code"] == "input_missing" and events == [], result


def test_a_prompt_without_an_output_is_refused_by_comfyui(provider):
    p = provider
    events = Events()
    result = p.endpoints.invoke(p.name, body({"1": plain()["1"]}), events)
    assert result["status"] == "failed" and result["error"]["code"] == "prompt_invalid", result
    assert events == []


def test_only_the_runs_own_token_cancels_it_while_it_runs(provider, signals):
    p = provider
    token = cancel_tokens.new_token()
    go = signals()
    first = Invocation(p, body(held(go), token))
    first.reached("2")
    p.endpoints.cancel(p.name, first.request["execution_id"], cancel_tokens.new_token())  # someone else's token
    p.endpoints.cancel(p.name, "contract-someone-else", token)  # its token, another run
    go.touch()
    assert first.end()["status"] == "succeeded"  # neither stopped it
    second = Invocation(p, body(held(signals()), token))
    second.reached("2")
    p.endpoints.cancel(p.name, second.request["execution_id"], token)
    result = second.end()
    assert second.types()[-1] == "execution_interrupted", second.types()
    assert result["status"] == "failed" and result["error"]["code"] == "interrupted"


def test_a_queued_run_cancelled_never_runs_and_the_one_running_goes_on(provider, signals):
    p = provider
    go = signals()
    running = Invocation(p, body(held(go), cancel_tokens.new_token()))
    running.reached("2")
    token = cancel_tokens.new_token()
    queued = Invocation(p, body(plain(), token))  # behind the held run: one ComfyUI
    p.endpoints.cancel(p.name, queued.request["execution_id"], token)  # queued, or not arrived yet: kept for it
    result = queued.end()
    assert result["status"] == "failed" and result["error"]["code"] == "cancelled", result
    assert queued.events == []
    go.touch()
    assert running.end()["status"] == "succeeded"


def test_a_cancel_that_comes_before_its_run_is_kept_for_it(provider):
    p = provider
    token = cancel_tokens.new_token()
    request = body(plain(), token)
    p.endpoints.cancel(p.name, request["execution_id"], token)
    events = Events()
    result = p.endpoints.invoke(p.name, request, events)
    assert result["status"] == "failed" and result["error"]["code"] == "cancelled" and events == []


def test_logs_are_the_last_lines_filtered(provider):
    p = provider
    text = p.endpoints.logs(p.name)
    assert text.endswith("\n") and len(text.splitlines()) <= 200
    assert len(p.endpoints.logs(p.name, tail=1).splitlines()) == 1
    ready = p.endpoints.logs(p.name, contains="READY")  # case-insensitive
    assert ready and all("ready" in line.lower() for line in ready.splitlines())
    assert p.endpoints.logs(p.name, tail=0) == ""
    with pytest.raises(EndpointNotFound):
        p.endpoints.logs("NoSuchEnv1")


def test_a_run_whose_invoker_went_away_runs_on_and_its_result_is_answered_to_the_next_follower(provider, signals):
    """A ComfyUI killed with runs in flight: the one running and the one queued behind it run on at the endpoint
    (nothing is lost writing to the invoker's closed connection), and the runs are answered to the process that
    takes them over (resume), waited for while they go on, with their outputs."""
    p = provider
    go = signals()
    running = Invocation(p, body(held(go), cancel_tokens.new_token()), leave_at="2")
    queued = Invocation(p, body(plain(), cancel_tokens.new_token()), leave_at="sagemaker.resumable")
    for left in (running, queued):
        left.thread.join(120)
        assert isinstance(left.error, Gone), (left.result, left.error)
    answers: dict[str, dict | Exception] = {}

    def follow(left: Invocation) -> None:
        try:
            answers[left.request["execution_id"]] = p.endpoints.resume(p.name, left.request["execution_id"],
                                                                       left.resume(), lambda e: None)
        except Exception as err:
            answers[left.request["execution_id"]] = err

    followers = [threading.Thread(target=follow, args=(left,), daemon=True) for left in (running, queued)]
    for thread in followers:
        thread.start()
    go.touch()  # the held run goes on only now: its follower waited for it
    for thread in followers:
        thread.join(120)
    first, second = answers[running.request["execution_id"]], answers[queued.request["execution_id"]]
    assert isinstance(first, dict) and first["status"] == "succeeded", first
    assert isinstance(second, dict) and second["status"] == "succeeded", second
    assert first["execution_id"] == running.request["execution_id"]
    item = first["outputs"]["3"]["images"][0]
    assert hashlib.sha256(p.store.get(blob_key(item["sha256"])).data).hexdigest() == item["sha256"]
    # Answered again while it is kept (a follower that died in turn), the same result.
    assert p.endpoints.resume(p.name, queued.request["execution_id"], queued.resume(), lambda e: None) == second


def test_a_run_the_endpoint_does_not_have_is_unknown_to_it(provider):
    with pytest.raises(RunUnknown):
        provider.endpoints.resume(provider.name, f"contract-{uuid.uuid4().hex[:12]}", {"kind": "local"},
                                  lambda e: None)


def test_a_worker_that_dies_fails_its_run_and_the_endpoint_which_stops_and_starts_again(provider, signals):
    p = provider
    run = Invocation(p, body(held(signals()), cancel_tokens.new_token()))
    run.reached("2")
    mark = len(p.changes)
    p.kill()
    with pytest.raises(InvocationFailed):
        run.end()
    assert "exited" in p.wait_state("Failed", timeout=180)["reason"]
    assert p.endpoints.stop(p.name)["state"] == "Stopped"
    with pytest.raises(EndpointStateConflict):
        p.endpoints.stop(p.name)
    with pytest.raises(EndpointNotReady, match="stopped"):
        p.endpoints.invoke(p.name, body(plain()), lambda e: None)
    assert p.endpoints.start(p.name)["state"] == "Creating"
    with pytest.raises(EndpointStateConflict):
        p.endpoints.start(p.name)
    p.wait_state("InService")
    assert p.endpoints.invoke(p.name, body(plain()), lambda e: None)["status"] == "succeeded"
    states = iter([c["state"] for c in p.changes[mark:] if c.get("name") == p.name])
    assert all(state in states for state in ("Failed", "Stopped", "Creating", "InService")), p.changes[mark:]


def test_delete_removes_the_endpoint(provider):
    p = provider
    other = p.publish("ContractDel" + uuid.uuid4().hex[:4])
    p.endpoints.deploy(other)
    p.endpoints.delete(other["name"])
    assert [c for c in p.changes if c.get("name") == other["name"]][-1] == {
        "name": other["name"], "kind": "local", "state": "Deleted"}
    with pytest.raises(EndpointNotFound):
        p.endpoints.get(other["name"])
    with pytest.raises(EndpointNotFound):
        p.endpoints.delete(other["name"])
    assert other["name"] not in [e["name"] for e in p.endpoints.list()]
    assert p.endpoints.get(p.name)["state"] == "InService"  # the other endpoint is untouched


def test_a_redeploy_serves_the_old_version_until_the_new_one_is_ready_and_ends_no_run(provider, signals):
    p = provider
    fake = isinstance(p.endpoints, FakeEndpoints)
    serving = p.endpoints.get(p.name)
    if fake:
        p.endpoints.hold_starts = True  # the new version starts when the test says (a real one: when it is up)
        newer = {**p.manifest, "version": serving["version"] + 1}
    else:
        newer = p.publish(p.name)  # the next version of the same environment
    go = signals()
    running = Invocation(p, body(held(go), cancel_tokens.new_token()))
    running.reached("2")
    try:
        answer = p.endpoints.deploy(newer)
        assert answer["state"] == "Updating" and answer["version"] == serving["version"], answer
        assert answer["url"] == serving["url"]  # the old worker serves meanwhile
        sent_during = Invocation(p, body(plain()))  # queued behind the held run, on the old worker
        if fake:
            p.endpoints.ready(p.name)
        switched = p.wait_state("InService")
        assert switched["version"] == newer["version"] and switched["reason"] is None
        go.touch()
        assert running.end()["status"] == "succeeded"
        assert sent_during.end()["status"] == "succeeded"
        assert p.endpoints.invoke(p.name, body(plain()), lambda e: None)["status"] == "succeeded"
    finally:
        if fake:
            p.endpoints.hold_starts = False


def test_the_fake_keeps_the_signature_of_every_method_it_overrides():
    """Callers reach FakeEndpoints through the Endpoints interface (a change notice calls `forget()` on whatever
    provider is made): a method of the same name taking other arguments breaks them only at run time."""
    import inspect

    from comfyui_sagemaker.core.endpoints import Endpoints

    def takes_the_same(fake, real) -> bool:  # the interface's parameters first, as it names them; extra ones optional
        mine = list(inspect.signature(fake).parameters.values())
        theirs = list(inspect.signature(real).parameters.values())
        return [(p.name, p.kind) for p in mine[:len(theirs)]] == [(p.name, p.kind) for p in theirs] \
            and all(p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                    for p in mine[len(theirs):])

    differ = [name for name, fn in vars(FakeEndpoints).items()
              if callable(fn) and not name.startswith("__") and callable(getattr(Endpoints, name, None))
              and not takes_the_same(fn, getattr(Endpoints, name))]
    assert differ == []
