"""`worker serve ENV` on a machine with no ComfyUI, without a worker: where it listens (every address only when
shared, one address as given, loopback otherwise), the address the team is told (resolved from the machine's
name by a stubbed resolver, never a real one; nothing is bound beyond loopback), and how long the serving process
lives (until a designer's stop, a failure, or Ctrl+C/SIGTERM, which stops the worker and withdraws the entry).
The real processes are tests/integration/test_serve_shared.py's."""

from __future__ import annotations

import socket

import pytest
from comfyui_sagemaker.cli import main
from comfyui_sagemaker.core.shared_registry import SharedRegistry, Sharing, entry_key
from comfyui_sagemaker.core.worker_contract import WorkerRuntime
from comfyui_sagemaker.local import endpoints as local_endpoints
from comfyui_sagemaker.local.endpoints import LocalEndpoints
from comfyui_sagemaker.local.folder_store import FolderStore
from comfyui_sagemaker.local.on_premises import ServeRefused, Serving, advertised, listen_host
from harness.fake_comfy import publish


@pytest.mark.parametrize("share, host, chosen", [(True, None, "0.0.0.0"), (False, None, "127.0.0.1"),
                                                 (True, "192.168.1.20", "192.168.1.20"), (False, "::1", "::1")])
def test_it_listens_on_every_address_only_when_shared(share, host, chosen):
    assert listen_host(share, host) == chosen


@pytest.mark.parametrize("host, said", [("gpu.example", "not an IP address"), ("0.0.0.0", "only a shared endpoint")])
def test_a_private_worker_stays_on_this_machine(host, said):
    with pytest.raises(ServeRefused, match=said):
        listen_host(False, host)


def resolver(*addresses: str):
    asked = []

    def resolve(name, port, family, kind):
        asked.append((name, family))
        return [(family, kind, 6, "", (a, 0) if family == socket.AF_INET else (a, 0, 0, 0)) for a in addresses]

    return resolve, asked


def test_every_address_is_told_as_the_machines_own_address_beyond_loopback():
    resolve, asked = resolver("127.0.1.1", "169.254.3.4", "192.168.1.20", "10.0.0.5")
    assert advertised("0.0.0.0", resolve=resolve, hostname=lambda: "gpu-box") == "192.168.1.20"
    assert asked == [("gpu-box", socket.AF_INET)]
    resolve6, asked6 = resolver("::1", "fe80::1%eth0", "2001:db8::20")
    assert advertised("::", resolve=resolve6, hostname=lambda: "gpu-box") == "2001:db8::20"
    assert asked6 == [("gpu-box", socket.AF_INET6)]


def test_one_address_or_the_one_given_is_told_without_resolving():
    def refuse(*args):
        raise AssertionError("resolved")

    assert advertised("192.168.1.20", resolve=refuse) == "192.168.1.20"
    assert advertised("0.0.0.0", "gpu.studio.lan", resolve=refuse) == "gpu.studio.lan"
    with pytest.raises(ServeRefused, match="not an address"):
        advertised("0.0.0.0", "http://evil@x")


def test_a_name_that_resolves_to_nothing_reachable_asks_for_advertise():
    resolve, _ = resolver("127.0.1.1")
    with pytest.raises(ServeRefused, match="pass --advertise"):
        advertised("0.0.0.0", resolve=resolve, hostname=lambda: "gpu-box")

    def fails(*args):
        raise socket.gaierror("Name or service not known")

    with pytest.raises(ServeRefused, match="does not resolve"):
        advertised("0.0.0.0", resolve=fails, hostname=lambda: "gpu-box")


def test_a_worker_on_every_address_is_registered_at_the_address_told(tmp_path, monkeypatch):
    """Nothing binds beyond loopback: the port finder and the process start are stubbed. A machine's worker runs a
    ComfyUI per GPU and never stops idle."""
    store = FolderStore(tmp_path / "store")
    bound, started = [], []
    monkeypatch.setattr(local_endpoints, "free_port", lambda host: bound.append(host) or 41234)
    sharing = Sharing(SharedRegistry(store), "i-gpu", "gpu-box", "0.0.0.0", "192.168.1.20")
    local = LocalEndpoints(tmp_path / "state", "file://store", WorkerRuntime(tmp_path, "", tmp_path),
                           sharing=lambda: sharing)
    local.dedicated = True
    monkeypatch.setattr(local._processes, "start", lambda argv, env, log: started.append(env) or 4242)
    monkeypatch.setattr(local, "_watch", lambda name, pid: None)  # no worker to watch
    local.deploy({**publish(store, "Env1"), "endpoint": {"kind": "local", "shared": True, "idle_stop_minutes": 5}})
    assert bound == ["0.0.0.0"] and started[0]["WORKER_HOST"] == "0.0.0.0"
    assert started[0]["WORKER_COMFYUI_COUNT"] == ""  # one ComfyUI per GPU, none of them a designer's own
    assert local.get("Env1")["url"] == "http://192.168.1.20:41234"
    assert local.get("Env1")["idle_stop_minutes"] == 0  # nobody would start it again
    local._share(local._read("Env1"), force=True)
    assert b"http://192.168.1.20:41234" in store.get(entry_key("Env1")).data


class Endpoint:
    """What Serving uses of LocalEndpoints: its states in order, a stop recorded."""

    def __init__(self, serving: Serving, states: list[dict]):
        self.serving = serving
        self.states = states
        self.stopped: list[str] = []
        self.deployed: list[dict] = []

    def adopt(self) -> None:
        pass

    def deploy(self, manifest: dict) -> None:
        self.deployed.append(manifest)

    def get(self, name: str) -> dict:
        view = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        self.serving.changed(view)  # each look is followed by a change: the wait never sleeps
        return {"name": name, "version": 1, "url": "http://192.168.1.20:41234", "reason": None, **view}

    def stop(self, name: str) -> None:
        self.stopped.append(name)
        self.states = [{"state": "Stopped"}]


def serving(states: list[dict], said: list[str]) -> tuple[Serving, Endpoint]:
    s = Serving({"name": "Env1", "version": 1, "endpoint": {"kind": "sagemaker"}}, True, said.append)
    return s, Endpoint(s, states)


def test_a_designers_stop_from_a_comfyui_ends_the_serving_process():
    said: list[str] = []
    s, endpoint = serving([{"state": "Creating"}, {"state": "InService"}, {"state": "Stopping"},
                           {"state": "Stopped", "stopped_by": "dee"}], said)
    assert s.run(endpoint) == 0
    assert endpoint.deployed[0]["endpoint"] == {"kind": "local", "shared": True} and endpoint.stopped == []
    assert said[-1] == "endpoint Env1 stopped by dee"
    assert "endpoint Env1 version 1: InService at http://192.168.1.20:41234" in said


def test_ctrl_c_stops_the_worker_and_withdraws_the_entry():
    said: list[str] = []
    s, endpoint = serving([{"state": "InService"}], said)
    endpoint.get = lambda name, get=endpoint.get: (s.interrupt(), get(name))[1]  # the signal comes while it serves
    assert s.run(endpoint) == 0 and endpoint.stopped == ["Env1"] and said[-1] == "endpoint Env1 stopped here"


def test_a_failed_endpoint_ends_the_process_with_its_reason():
    said: list[str] = []
    s, endpoint = serving([{"state": "Creating"}, {"state": "Failed", "reason": "no GPU"}], said)
    assert s.run(endpoint) == 1 and endpoint.stopped == ["Env1"] and "failed: no GPU" in said[-1]


def test_the_cli_names_what_it_cannot_serve(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COMFYUI_SAGEMAKER_STORE_PATH", str(tmp_path / "store"))
    assert main(["worker", "serve", "--share"]) == 1
    assert "name it" in capsys.readouterr().err
    assert main(["worker", "serve", "Env1", "--config-dir", str(tmp_path)]) == 1
    assert "environment 'Env1' is not in the store" in capsys.readouterr().err
    publish(FolderStore(tmp_path / "store"), "Env1")
    assert main(["worker", "serve", "Env1", "--version", "2", "--config-dir", str(tmp_path)]) == 1
    assert "has no version 2 (it has [1])" in capsys.readouterr().err
    assert main(["worker", "serve", "Env1", "--config-dir", str(tmp_path), "--comfyui-dir", str(tmp_path)]) == 1
    assert "no ComfyUI at" in capsys.readouterr().err
    assert main(["worker", "serve", "Env1", "--host", "10.0.0.1", "--config-dir", str(tmp_path)]) == 1
    assert "only a shared endpoint does" in capsys.readouterr().err
