import pytest
from comfyui_sagemaker.core.errors import Forbidden
from comfyui_sagemaker.server_routes import guard

LOOP = ["127.0.0.1"]


def check(method="POST", listen=LOOP, allowed=(), token="", path="/templates", **headers):
    guard.check(method, headers, listen=listen, allowed_hosts=allowed, token=token, path=path)


def test_same_origin_loopback_passes():
    check(Host="127.0.0.1:8188", Origin="http://127.0.0.1:8188")
    check(Host="localhost:8188", Origin="http://localhost:8188")
    check(Host="[::1]:8188", Origin="http://[::1]:8188")


def test_scripts_without_origin_pass():
    check(Host="127.0.0.1:8188")


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:9999", "null", "http://localhost:8188"])
def test_foreign_origin_is_refused(origin):
    with pytest.raises(Forbidden):
        check(Host="127.0.0.1:8188", Origin=origin)


def test_dns_rebinding_host_is_refused_even_with_matching_origin():
    with pytest.raises(Forbidden, match="Host"):
        check(Host="evil.example:8188", Origin="http://evil.example:8188")
    with pytest.raises(Forbidden, match="Host"):
        check("GET", Host="evil.example:8188")


def test_allowed_hosts_let_a_named_host_in():
    check(Host="studio.local:8188", Origin="http://studio.local:8188", allowed=("studio.local",))


def test_off_loopback_needs_a_token():
    listen = ["0.0.0.0"]
    with pytest.raises(Forbidden, match="token"):
        check(listen=listen, Host="127.0.0.1:8188")
    with pytest.raises(Forbidden, match="X-SageMaker-Token"):
        check(listen=listen, token="t0k", Host="127.0.0.1:8188")
    check(listen=listen, token="t0k", Host="127.0.0.1:8188", **{"X-SageMaker-Token": "t0k"})


@pytest.mark.parametrize("listen, token", [(["0.0.0.0"], "t0k"), (["127.0.0.1"], "t0k"), (["::"], "t0k")])
def test_where_a_token_is_needed_reads_need_it_too_but_health_and_rules(listen, token):
    for path in ("/templates", "/environments/E1", "/snapshot", "/endpoints/E1/logs", "/executions"):
        with pytest.raises(Forbidden, match="X-SageMaker-Token"):
            check("GET", listen=listen, token=token, path=path, Host="127.0.0.1:8188")
        check("GET", listen=listen, token=token, path=path, Host="127.0.0.1:8188", **{"X-SageMaker-Token": token})
    for path in ("/health", "/rules"):
        check("GET", listen=listen, token=token, path=path, Host="127.0.0.1:8188")
    with pytest.raises(Forbidden, match="token"):  # off loopback and no token configured: nothing but those
        check("GET", listen=["0.0.0.0"], path="/templates", Host="127.0.0.1:8188")


def test_without_a_token_on_loopback_reads_are_open():
    check("GET", path="/templates", Host="127.0.0.1:8188")
    assert guard.authorized({}, listen=LOOP, token="")
    assert not guard.authorized({}, listen=LOOP, token="t") and not guard.authorized({}, listen=["0.0.0.0"], token="")


def test_explicit_listen_address_is_an_allowed_host():
    check(listen=["192.168.1.5"], token="t", Host="192.168.1.5:8188", **{"X-SageMaker-Token": "t"})
