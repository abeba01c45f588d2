"""Model downloads: real HTTP on 127.0.0.1, and every refusal the SSRF rules promise."""

import hashlib
import socket

import pytest
from comfyui_sagemaker.core.net.fetch import DownloadFailed, DownloadRefused, check_url, download
from harness.http_server import FileServer

DATA = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
def server():
    with FileServer({"/model.safetensors": DATA}) as s:
        yield s


def allowed(s):
    return [f"127.0.0.1:{s.port}"]


def test_download_with_sha256(server, tmp_path):
    digest = download(f"{server.url}/model.safetensors", tmp_path / "m.safetensors",
                      sha256=hashlib.sha256(DATA).hexdigest(), allowed_hosts=allowed(server))
    assert (tmp_path / "m.safetensors").read_bytes() == DATA and digest == hashlib.sha256(DATA).hexdigest()
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_sha256_mismatch_removes_the_file(server, tmp_path):
    with pytest.raises(DownloadFailed, match="sha256 mismatch"):
        download(f"{server.url}/model.safetensors", tmp_path / "m.safetensors", sha256="0" * 64,
                 allowed_hosts=allowed(server))
    assert list(tmp_path.iterdir()) == []


def test_a_server_that_stops_midway_is_resumed(server, tmp_path):
    server.drop_after["/model.safetensors"] = 300_000
    download(f"{server.url}/model.safetensors", tmp_path / "m.safetensors", allowed_hosts=allowed(server))
    assert (tmp_path / "m.safetensors").read_bytes() == DATA
    assert server.requests[-1][1] == "bytes=300000-"


def test_a_server_that_keeps_failing_leaves_nothing_under_the_real_name(server, tmp_path):
    with pytest.raises(DownloadFailed, match="404"):
        download(f"{server.url}/absent.safetensors", tmp_path / "m.safetensors", allowed_hosts=allowed(server))
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://x/", "javascript:alert(1)",
                                 "//example.com/x"])
def test_only_http_and_https(url, tmp_path):
    with pytest.raises(DownloadRefused, match="http and https"):
        download(url, tmp_path / "x")


def fake_dns(address):
    def resolve(host, port, type=0):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
    return resolve


@pytest.mark.parametrize("address, why", [
    ("127.0.0.1", "loopback"), ("169.254.169.254", "link-local"), ("10.1.2.3", "private"),
    ("192.168.0.10", "private"), ("172.16.5.5", "private"), ("0.0.0.0", "reserved"),
])
def test_inside_addresses_are_refused(address, why):
    with pytest.raises(DownloadRefused, match=why):
        check_url("http://models.example/x.safetensors", resolve=fake_dns(address))


def test_localhost_by_name_is_refused_for_real(server):
    with pytest.raises(DownloadRefused, match="loopback"):
        check_url(f"http://localhost:{server.port}/model.safetensors")


def test_every_redirect_hop_is_checked(server, tmp_path):
    server.redirects["/hop"] = "http://169.254.169.254/latest/meta-data/"
    with pytest.raises(DownloadRefused, match="link-local"):
        download(f"{server.url}/hop", tmp_path / "x.safetensors", allowed_hosts=allowed(server))
    server.redirects["/ok"] = "/model.safetensors"  # a checked hop to an allowed host is followed
    download(f"{server.url}/ok", tmp_path / "ok.safetensors", allowed_hosts=allowed(server))
    assert (tmp_path / "ok.safetensors").read_bytes() == DATA


def test_dns_is_resolved_once_and_the_checked_address_is_used(server, tmp_path):
    answers = iter(["127.0.0.1", "169.254.169.254"])  # a rebinding DNS: the second answer is the bad one
    calls = []

    def rebinding(host, port, type=0):
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    download(f"http://models.test:{server.port}/model.safetensors", tmp_path / "m.safetensors",
             allowed_hosts=[f"models.test:{server.port}"], resolve=rebinding)
    assert calls == ["models.test"] and (tmp_path / "m.safetensors").read_bytes() == DATA
    assert server.requests[-1][0] == "/model.safetensors"
