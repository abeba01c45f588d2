"""Hostile input for model downloads and model files: SSRF address forms, stale or foreign `.part`
files, downloads that would replace an existing model, deletes through symlinked folders.

Everything stays on this machine: addresses come from a resolver stub (or the real resolver with
AI_NUMERICHOST, which parses numbers and never asks DNS), and servers listen on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from comfyui_sagemaker.core import models as model_service
from comfyui_sagemaker.core.errors import Conflict
from comfyui_sagemaker.core.fs.hashing import HashCache
from comfyui_sagemaker.core.models import ModelService
from comfyui_sagemaker.core.net import fetch
from comfyui_sagemaker.core.net.fetch import DownloadFailed, DownloadRefused, check_url, download
from comfyui_sagemaker.core.tasks import TaskManager
from comfyui_sagemaker.server_routes.errors import status_of
from harness.http_server import FileServer

A = bytes(range(256)) * 64  # 16 KiB
B = bytes(reversed(range(256))) * 64  # the same size, other bytes


# --- 1. SSRF: only globally routable addresses ---------------------------------------------------------------

def fake_dns(address: str) -> Callable[..., list]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET

    def resolve(host, port, type=0):
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]
    return resolve


REFUSED = [
    "127.0.0.1", "127.1.2.3", "0.0.0.0", "10.0.0.1", "10.255.255.254", "172.16.0.1", "172.31.255.254",
    "192.168.0.1", "169.254.169.254", "100.64.0.1", "100.100.100.200", "100.127.255.254", "192.0.0.1",
    "198.18.0.1", "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1",
    "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "fec0::1", "ff02::1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "::ffff:100.100.100.200", "::7f00:1",
    "2002:7f00:1::1", "2002:a9fe:a9fe::1", "2002:a00:1::1",  # 6to4 of 127.0.0.1, 169.254.169.254, 10.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo whose client is 127.0.0.1
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe",  # NAT64 of loopback and of the metadata service
    "2001:db8::1",
]


@pytest.mark.parametrize("address", REFUSED)
def test_addresses_that_are_not_globally_routable_are_refused(address):
    with pytest.raises(DownloadRefused) as refused:
        check_url("https://models.example/x.safetensors", resolve=fake_dns(address))
    message = refused.value.message
    assert address in message and "download_allowed_hosts" in message
    # The same address is allowed when the host is listed.
    check_url("https://models.example/x.safetensors", ["models.example"], resolve=fake_dns(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808",
                                     "2002:808:808::1"])
def test_globally_routable_addresses_are_allowed(address):
    parts, chosen = check_url("https://models.example/x.safetensors", resolve=fake_dns(address))
    assert chosen == address and parts.hostname == "models.example"


@pytest.mark.parametrize("address, why", [
    ("100.100.100.200", "not globally routable"), ("::ffff:169.254.169.254", "169.254.169.254"),
    ("2002:a9fe:a9fe::1", "169.254.169.254"), ("64:ff9b::7f00:1", "127.0.0.1"), ("fec0::1", "site-local"),
])
def test_the_message_says_why(address, why):
    with pytest.raises(DownloadRefused, match=why):
        check_url("http://models.example/x", resolve=fake_dns(address))


def test_one_bad_address_among_good_ones_is_enough():
    def resolve(host, port, type=0):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("100.100.100.200", port))]
    with pytest.raises(DownloadRefused, match="100.100.100.200"):
        check_url("http://models.example/x", resolve=resolve)


def numeric_only(host, port, type=0):
    """The real resolver, limited to numeric hosts: it parses, and never sends a DNS query."""
    return socket.getaddrinfo(host, port, type=type, flags=socket.AI_NUMERICHOST)


@pytest.mark.parametrize("url", ["http://2130706433/", "http://0x7f000001/", "http://0177.0.0.1/", "http://127.1/",
                                 "http://[::ffff:7f00:1]/", "http://0/", "http://[::1]:8188/", "http://0x64.0x64.0x64.200/"])
def test_numeric_host_forms_are_refused(url):
    with pytest.raises(DownloadRefused, match="download_allowed_hosts"):
        check_url(url, resolve=numeric_only)


@pytest.mark.parametrize("url", ["http://example.com:99999/m.safetensors", "http://example.com:-1/m",
                                 "http://example.com:port/m", "http://exa\r\nmple.com/m",
                                 "http://example.com/m\r\nX: y", "http://example.com/a b", "http://[::1/m",
                                 "http://\tlocalhost/m"])
def test_malformed_urls_are_refused_not_500(url):
    with pytest.raises(DownloadRefused):
        check_url(url, resolve=numeric_only)


# --- 2. a .part belongs to one URL and one announced size --------------------------------------------------

class ScriptedServer:
    """127.0.0.1 HTTP server; `answer(n, path, range)` -> (status, headers, body, cut) for the n-th request."""

    def __init__(self, answer: Callable[[int, str, str | None], tuple[int, dict, bytes, int | None]]):
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                status, headers, body, cut = answer(len(server.requests), self.path, self.headers.get("Range"))
                self.send_response(status)
                for k, v in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body if cut is None else body[:cut])
                if cut is not None:
                    self.wfile.flush()
                    self.connection.close()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.allowed = [f"127.0.0.1:{self.port}"]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def ranged(data: bytes, rng: str | None) -> tuple[int, dict, bytes, None]:
    """An honest answer for `data` to a request with Range header `rng`."""
    if not rng:
        return 200, {}, data, None
    start = int(rng[6:].split("-")[0])
    if start >= len(data):
        return 416, {"Content-Range": f"bytes */{len(data)}"}, b"", None
    return 206, {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}, data[start:], None


def test_a_part_left_by_another_url_is_not_resumed(tmp_path, monkeypatch):
    dest = tmp_path / "m.safetensors"
    with FileServer({"/a": A, "/b": B}) as server:
        allowed = [f"127.0.0.1:{server.port}"]
        server.drop_after["/a"] = 4000
        monkeypatch.setattr(fetch, "RETRIES", 0)  # the first download stops after 4,000 bytes of A
        with pytest.raises(DownloadFailed, match="kept to resume"):
            download(f"{server.url}/a", dest, allowed_hosts=allowed)
        monkeypatch.setattr(fetch, "RETRIES", 3)
        download(f"{server.url}/b", dest, allowed_hosts=allowed)
        assert dest.read_bytes() == B
        assert server.requests[-1] == ("/b", None)  # started over, no Range
        download(f"{server.url}/a", tmp_path / "again.safetensors", allowed_hosts=allowed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.safetensors", "m.safetensors"]


def test_a_part_is_resumed_only_for_the_same_expected_sha256(tmp_path, monkeypatch):
    dest = tmp_path / "m.safetensors"
    with FileServer({"/a": A}) as server:
        allowed = [f"127.0.0.1:{server.port}"]
        server.drop_after["/a"] = 4000
        monkeypatch.setattr(fetch, "RETRIES", 0)
        with pytest.raises(DownloadFailed):
            download(f"{server.url}/a", dest, allowed_hosts=allowed)
        monkeypatch.setattr(fetch, "RETRIES", 3)
        download(f"{server.url}/a", dest, sha256=hashlib.sha256(A).hexdigest(), allowed_hosts=allowed)
        assert server.requests[-1] == ("/a", None) and dest.read_bytes() == A


@pytest.mark.parametrize("part", [A + b"tail", b"garbage" * 10], ids=["longer", "shorter"])
def test_a_416_does_not_install_a_part_it_cannot_vouch_for(tmp_path, part):
    dest = tmp_path / "m.safetensors"
    dest.with_name(f".{dest.name}.part").write_bytes(part)  # left by someone else: no record of what it is

    def answer(n, path, rng):
        return (416, {"Content-Range": f"bytes */{len(A)}"}, b"", None) if rng else (200, {}, A, None)

    with ScriptedServer(answer) as server:
        download(f"{server.url}/m", dest, allowed_hosts=server.allowed)
    assert dest.read_bytes() == A


def test_a_416_with_a_recorded_part_of_another_size_starts_over(tmp_path, monkeypatch):
    dest = tmp_path / "m.safetensors"
    state = {"stubborn": False}

    def answer(n, path, rng):
        if n == 1:
            return 200, {}, A, 4000
        if rng and state["stubborn"]:  # a server that claims the part is complete when it is not
            return 416, {"Content-Range": f"bytes */{len(A)}"}, b"", None
        return ranged(A, rng)

    with ScriptedServer(answer) as server:
        monkeypatch.setattr(fetch, "RETRIES", 0)
        with pytest.raises(DownloadFailed):
            download(f"{server.url}/m", dest, allowed_hosts=server.allowed)
        state["stubborn"] = True
        monkeypatch.setattr(fetch, "RETRIES", 3)
        download(f"{server.url}/m", dest, allowed_hosts=server.allowed)
    assert dest.read_bytes() == A


def test_a_416_for_a_complete_part_installs_it(tmp_path, monkeypatch):
    dest = tmp_path / "m.safetensors"
    def answer(n, path, rng):
        if n == 1:
            dest.write_bytes(b"someone else's")  # the name is taken while the download runs
        return ranged(A, rng)

    with ScriptedServer(answer) as server:
        # A finished download that could not be installed is kept...
        with pytest.raises(FileExistsError):
            download(f"{server.url}/m", dest, allowed_hosts=server.allowed)
        dest.unlink()
        # ...and installed on the next try without downloading it again.
        download(f"{server.url}/m", dest, allowed_hosts=server.allowed)
        assert server.requests[-1] == ("/m", f"bytes={len(A)}-")
    assert dest.read_bytes() == A


def test_a_second_answer_with_another_total_starts_over(tmp_path):
    new = B + b"version two is longer"

    def answer(n, path, rng):
        if n == 1:
            return 200, {}, A, 4000  # version one, cut short
        return ranged(new, rng)  # the file changed on the server meanwhile

    with ScriptedServer(answer) as server:
        download(f"{server.url}/m", tmp_path / "m.safetensors", allowed_hosts=server.allowed)
        assert server.requests[1][1] == "bytes=4000-" and server.requests[2][1] is None
    assert (tmp_path / "m.safetensors").read_bytes() == new


@pytest.mark.parametrize("content_range", ["bytes 0-{end}/{total}", "bytes 3000-{end}/{total}", "bytes */{total}",
                                           "bytes 4000-{end}/*", "nonsense", None])
def test_a_206_must_start_where_asked_and_state_the_same_total(tmp_path, content_range):
    def answer(n, path, rng):
        if n == 1:
            return 200, {}, A, 4000
        if n == 2:
            headers = {} if content_range is None else {
                "Content-Range": content_range.format(end=len(A) - 1, total=len(A))}
            return 206, headers, A[:len(A) - 4000], None  # not the bytes asked for
        return ranged(A, rng)

    with ScriptedServer(answer) as server:
        download(f"{server.url}/m", tmp_path / "m.safetensors", allowed_hosts=server.allowed)
    assert (tmp_path / "m.safetensors").read_bytes() == A


def test_a_resume_with_the_same_url_and_total_continues(tmp_path):
    with ScriptedServer(lambda n, path, rng: (200, {}, A, 4000) if n == 1 else ranged(A, rng)) as server:
        download(f"{server.url}/m", tmp_path / "m.safetensors", allowed_hosts=server.allowed)
        assert [r for _, r in server.requests] == [None, "bytes=4000-"]
    assert (tmp_path / "m.safetensors").read_bytes() == A
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no part, no record left


# --- 3. an existing model is never replaced without overwrite ------------------------------------------------

@pytest.fixture
def models(tmp_path):
    bases = {"checkpoints": [tmp_path / "models" / "checkpoints", tmp_path / "extra" / "checkpoints"]}
    for paths in bases.values():
        for p in paths:
            p.mkdir(parents=True)
    allowed: list[str] = []
    svc = ModelService(lambda: {k: ([str(p) for p in v], [".safetensors"]) for k, v in bases.items()},
                       HashCache(tmp_path / "hc.json"), TaskManager(), lambda: allowed)
    svc.allowed_for_tests = allowed
    svc.base = bases["checkpoints"][0]
    svc.extra = bases["checkpoints"][1]
    return svc


def finished(svc: ModelService, job):
    job = svc.tasks.wait(job.id, 120)
    assert job.state != "running"
    return job


def test_download_refuses_an_existing_model_up_front(models):
    (models.base / "m.safetensors").write_bytes(b"mine")
    with FileServer({"/m": A}) as server:
        models.allowed_for_tests.append(f"127.0.0.1:{server.port}")
        with pytest.raises(model_service.ModelExists, match="overwrite: true") as refused:
            models.download("checkpoints", "m.safetensors", f"{server.url}/m")
        assert status_of(refused.value) == 409 and server.requests == []
        assert (models.base / "m.safetensors").read_bytes() == b"mine"
        (models.extra / "e.safetensors").write_bytes(b"in the second base path")  # ComfyUI lists it too
        with pytest.raises(model_service.ModelExists):
            models.download("checkpoints", "e.safetensors", f"{server.url}/m")
        job = finished(models, models.download("checkpoints", "m.safetensors", f"{server.url}/m", overwrite=True))
        assert job.state == "succeeded", job.error
    assert (models.base / "m.safetensors").read_bytes() == A


def test_a_model_that_appears_during_the_download_is_kept(models):
    target = models.base / "m.safetensors"

    def answer(n, path, rng):
        target.write_bytes(b"arrived meanwhile")  # e.g. an upload of the same name finished first
        return ranged(A, rng)

    with ScriptedServer(answer) as server:
        models.allowed_for_tests.append(f"127.0.0.1:{server.port}")
        job = finished(models, models.download("checkpoints", "m.safetensors", f"{server.url}/m"))
        assert job.state == "failed" and job.error["code"] == "model_exists", job.error
        assert "overwrite: true" in job.error["message"]
        assert target.read_bytes() == b"arrived meanwhile"


def test_fetch_download_never_replaces_a_file_that_appears_meanwhile(tmp_path):
    dest = tmp_path / "m.safetensors"

    def progress(done, total):
        if not dest.exists():
            dest.write_bytes(b"arrived meanwhile")

    with FileServer({"/m": A}) as server:
        with pytest.raises(FileExistsError):
            download(f"{server.url}/m", dest, allowed_hosts=[f"127.0.0.1:{server.port}"], progress=progress)
    assert dest.read_bytes() == b"arrived meanwhile"


def test_a_second_download_to_the_same_name_while_one_runs_is_refused(models):
    gate = threading.Event()

    def answer(n, path, rng):
        gate.wait(120)
        return ranged(A, rng)

    with ScriptedServer(answer) as server:
        models.allowed_for_tests.append(f"127.0.0.1:{server.port}")
        first = models.download("checkpoints", "m.safetensors", f"{server.url}/m")
        try:
            with pytest.raises(Conflict, match="running"):
                models.download("checkpoints", "m.safetensors", f"{server.url}/other", overwrite=True)
        finally:
            gate.set()
        assert finished(models, first).state == "succeeded"


def test_install_is_exclusive_without_overwrite(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.write_bytes(b"new")
    dest.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        fetch.install(src, dest, overwrite=False)
    assert dest.read_bytes() == b"old" and src.exists()
    fetch.install(src, dest, overwrite=True)
    assert dest.read_bytes() == b"new" and not src.exists()


# --- 4. deletes never follow a symlink out of the model folders ---------------------------------------------

def test_a_file_reached_through_a_linked_folder_is_listed_but_not_deleted(models, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.safetensors").write_bytes(b"precious")
    os.symlink(outside, models.base / "linked")
    assert "linked/victim.safetensors" in {m["name"] for m in models.list()["folders"]["checkpoints"]}
    with pytest.raises(model_service.ModelOutsideFolder, match="link") as refused:
        models.delete("checkpoints", "linked/victim.safetensors")
    assert str(outside) in refused.value.message and status_of(refused.value) in (400, 403)
    assert (outside / "victim.safetensors").read_bytes() == b"precious"


def test_a_linked_model_file_is_unlinked_not_its_target(models, tmp_path):
    target = tmp_path / "elsewhere.safetensors"
    target.write_bytes(b"precious")
    os.symlink(target, models.base / "alias.safetensors")
    models.delete("checkpoints", "alias.safetensors")
    assert not os.path.lexists(models.base / "alias.safetensors") and target.read_bytes() == b"precious"


def test_a_linked_base_path_and_links_inside_it_are_fine(tmp_path):
    real = tmp_path / "big-disk" / "checkpoints"
    (real / "sub").mkdir(parents=True)
    (real / "sub" / "m.safetensors").write_bytes(b"x")
    (real / "top.safetensors").write_bytes(b"x")
    (tmp_path / "models").mkdir()
    os.symlink(real, tmp_path / "models" / "checkpoints")  # users link a whole model folder elsewhere
    os.symlink(real / "sub", real / "alias")  # a link that stays inside the folder
    svc = ModelService(lambda: {"checkpoints": ([str(tmp_path / "models" / "checkpoints")], [".safetensors"])},
                       HashCache(tmp_path / "hc.json"), TaskManager(), lambda: [])
    svc.delete("checkpoints", "top.safetensors")
    svc.delete("checkpoints", "alias/m.safetensors")
    assert not (real / "top.safetensors").exists() and not (real / "sub" / "m.safetensors").exists()


def test_a_model_in_the_second_base_path_is_deleted(models):
    (models.extra / "e.safetensors").write_bytes(b"x")
    models.delete("checkpoints", "e.safetensors")
    assert not (models.extra / "e.safetensors").exists()


def test_a_folder_swapped_for_a_link_after_the_check_is_not_followed(models, tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.safetensors").write_bytes(b"precious")
    sub = models.base / "sub"
    sub.mkdir()
    (sub / "victim.safetensors").write_bytes(b"x")
    inside = model_service._inside

    def check_then_swap(path, base):
        answer = inside(path, base)
        if not os.path.islink(sub):  # between the check and the unlink
            os.rename(sub, models.base / "moved")
            os.symlink(outside, sub)
        return answer

    monkeypatch.setattr(model_service, "_inside", check_then_swap)
    with pytest.raises(model_service.ModelOutsideFolder, match="replaced by a link"):
        models.delete("checkpoints", "sub/victim.safetensors")
    assert (outside / "victim.safetensors").read_bytes() == b"precious"
    assert (models.base / "moved" / "victim.safetensors").exists()
