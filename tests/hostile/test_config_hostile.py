"""The configuration as an attacker and as a fault would meet it (issue: hostile input, round two).

- A configuration that cannot be read at start gives an artist's rights (fail safe), never a designer's.
- The role is never raised from the page: only config.json (then Reload) or the environment raise it.
- Two changes at once both land, and config.json is a valid file after every one (lock + own temp file).
- Every value is checked against the schema before it lands (types, ranges, lengths, characters).
- "Replace the file" keeps what the panel cannot set or show (store_path, the token).

The extension's routes run in this process (harness.inprocess): none of this needs ComfyUI itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from comfyui_sagemaker.core import config as config_mod
from comfyui_sagemaker.core.errors import ConfigInvalid
from harness.inprocess import InProcess

PROMOTE = {"replace": True, "changes": {"role": "designer", "download_allowed_hosts": ["169.254.169.254"],
                                        "webhook_allowed_hosts": ["127.0.0.1"]}}


def extension(base: Path, config: str | None = None) -> InProcess:
    app = InProcess(base)
    if config is not None:
        (app.config_dir / "config.json").write_text(config)
    return app.start()


@pytest.fixture
def start(tmp_path, monkeypatch):
    for var in [v for v in os.environ if v.startswith(config_mod.ENV_PREFIX)]:
        monkeypatch.delenv(var)
    started: list[InProcess] = []

    def make(config: str | None = None, name: str = "base") -> InProcess:
        app = extension(tmp_path / name, config)
        started.append(app)
        return app

    yield make
    for app in started:
        app.stop()


UNREADABLE = {
    "a typo": '{"role": "artist",}',
    "half written": '{"role": "artist", "store": "fol',
    "a bad value": '{"role": "artist", "max_instances": true}',
    "an unknown key": '{"role": "artist", "rol": "artist"}',
    "not an object": '["artist"]',
}


@pytest.mark.parametrize("content", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_a_configuration_that_cannot_be_read_gives_an_artists_rights(start, content):
    app = start(content)
    health = app.request("GET", "/sagemaker/health").json()
    assert health["role"] == "artist" and health["ok"] is False and health["config_error"], health
    r = app.request("PUT", "/sagemaker/config", json=PROMOTE)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_for_role", r.text
    assert "cannot be read" in r.json()["error"]["message"] or "can be read" in r.json()["error"]["message"]
    for method, path in (("POST", "/sagemaker/templates"), ("POST", "/sagemaker/environments"),
                         ("POST", "/sagemaker/endpoints"), ("DELETE", "/sagemaker/templates/A")):
        r = app.request(method, path, json={})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_for_role", (path, r.text)
    connect = app.request("GET", "/sagemaker/connect").json()
    assert connect["role"] == "artist" and connect["effective"] is None and connect["startup_error"]
    assert (app.config_dir / "config.json").read_text() == content  # nothing rewritten


def test_the_environment_names_the_role_when_the_file_cannot_be_read(start, monkeypatch):
    monkeypatch.setenv("COMFYUI_SAGEMAKER_ROLE", "designer")
    app = start('{"role": "artist",}')
    assert app.request("GET", "/sagemaker/health").json()["role"] == "designer"


def test_a_token_variable_that_cannot_be_read_locks_the_door(start, monkeypatch):
    monkeypatch.setenv("COMFYUI_SAGEMAKER_TOKEN", "two words")
    app = start()
    health = app.request("GET", "/sagemaker/health").json()
    assert health["token_required"] is True and health["authorized"] is False
    assert app.request("GET", "/sagemaker/templates").status_code == 403
    assert app.request("GET", "/sagemaker/templates", headers={"X-SageMaker-Token": "two words"}).status_code == 403


def test_a_fixed_file_is_reloaded_and_only_the_file_makes_a_designer(start):
    app = start('{"role": "artist",}')
    still = app.request("POST", "/sagemaker/config/reload")
    assert still.status_code == 500 and still.json()["error"]["code"] == "config_invalid", still.text
    (app.config_dir / "config.json").write_text('{"role": "artist"}')
    r = app.request("POST", "/sagemaker/config/reload")
    assert r.status_code == 200 and r.json()["effective"]["role"] == "artist", r.text
    health = app.request("GET", "/sagemaker/health").json()
    assert health["ok"] is True and health["role"] == "artist"
    assert app.request("PUT", "/sagemaker/config", json=PROMOTE).status_code == 403
    (app.config_dir / "config.json").write_text('{"role": "designer"}')  # the file's owner raises it
    assert app.request("POST", "/sagemaker/config/reload").json()["effective"]["role"] == "designer"


def test_the_role_is_never_raised_by_a_change_from_the_page(tmp_path):
    (tmp_path / "config.json").write_text('{"role": "artist", "token": "kept-token-1"}')
    for changes, replace in (({"role": "designer"}, False), ({"role": None}, False), ({}, True),
                             ({"display_name": "x"}, True)):
        with pytest.raises(config_mod.RoleRaiseRefused):
            config_mod.update(tmp_path, changes, replace, environ={}, acting_role="artist")
    assert json.loads((tmp_path / "config.json").read_text())["role"] == "artist"
    # the file's owner (the CLI, aws setup) is not the page
    config_mod.update(tmp_path, {"role": "designer"}, environ={})
    assert config_mod.load(tmp_path, environ={}).role == "designer"


KEYS = {"display_name": "n{i}", "max_instances": 7, "execution_retention_days": 9, "webhook_retry_seconds": 60,
        "webhook_timeout_seconds": 5, "s3_max_concurrency": 3, "region": "eu-west-1", "allowed_hosts": ["h{i}"]}


def test_changes_at_once_all_land_and_the_file_stays_whole(start):
    app = start('{"store_path": "%s"}' % (app_store := "shared-store"))
    path = app.config_dir / "config.json"
    for round_ in range(8):
        answers: list[int] = []

        def change(key: str, value: object, round_: int, answers: list[int]) -> None:
            value = value.format(i=round_) if isinstance(value, str) else value
            if isinstance(value, list):
                value = [v.format(i=round_) for v in value]
            answers.append(app.request("PUT", "/sagemaker/config", json={"changes": {key: value}}).status_code)

        threads = [threading.Thread(target=change, args=(*kv, round_, answers)) for kv in KEYS.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers == [200] * len(KEYS), answers
        data = json.loads(path.read_text())  # whole JSON, every change in it
        assert data["display_name"] == f"n{round_}" and data["allowed_hosts"] == [f"h{round_}"], data
        assert {k: data[k] for k in KEYS if k not in ("display_name", "allowed_hosts")} == {
            k: v for k, v in KEYS.items() if k not in ("display_name", "allowed_hosts")}
        assert data["store_path"] == app_store
        effective = app.request("GET", "/sagemaker/connect").json()["effective"]
        assert effective["display_name"] == f"n{round_}"  # what runs is what the file holds
    assert not list(app.config_dir.glob(".config.json.*.tmp"))


WRITER = """
import sys
from pathlib import Path
from comfyui_sagemaker.core import config
for i in range(int(sys.argv[3])):
    config.update(Path(sys.argv[1]), {sys.argv[2]: f"{sys.argv[2][0]}{i}x"}, environ={})
"""


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), key, "30"])
             for key in ("display_name", "worker_image_uri")]
    try:
        assert [p.wait(timeout=300) for p in procs] == [0, 0]
    finally:
        for p in procs:
            p.kill()
    data = json.loads((tmp_path / "config.json").read_text())
    assert data == {"display_name": "d29x", "worker_image_uri": "w29x"}


HARMFUL = {
    "a token with a newline": {"token": "abcdefgh\nijkl"},
    "a token with a space": {"token": "abcd efgh"},
    "100,000 allowed hosts": {"allowed_hosts": [f"h{i}.example" for i in range(100_000)]},
    "a host that is no host": {"download_allowed_hosts": ["evil.example/path"]},
    "max_instances 1e9": {"max_instances": 1e9},
    "max_instances true": {"max_instances": True},
    "max_instances as text": {"max_instances": "4"},
    "a name that reads backwards": {"display_name": "artist\u202erengised"},
    "a name with a newline": {"display_name": "a\nb"},
    "a prefix that climbs": {"s3_prefix": "../.."},
    "a prefix with a dot part": {"s3_prefix": "team/./x"},
    "a region that is a URL": {"region": "http://127.0.0.1:9000"},
    "an image with a space": {"worker_image_uri": "a b"},
    "retention 0": {"execution_retention_days": 0},
}
NOT_FROM_THE_PAGE = {"a store path": {"store_path": "/"}, "an unknown key": {"owner": "me"}}


@pytest.mark.parametrize("changes", [*HARMFUL.values(), *NOT_FROM_THE_PAGE.values()],
                         ids=[*HARMFUL.keys(), *NOT_FROM_THE_PAGE.keys()])
def test_harmful_values_are_refused_before_they_land(start, changes):
    app = start('{"display_name": "before"}')
    before = (app.config_dir / "config.json").read_text()
    r = app.request("PUT", "/sagemaker/config", json={"changes": changes})
    assert r.status_code == 400 and r.json()["error"]["code"] == "config_invalid", r.text
    assert next(iter(changes)) in r.json()["error"]["message"]
    assert (app.config_dir / "config.json").read_text() == before
    check = app.request("POST", "/sagemaker/connect/check", json={"changes": changes})
    assert check.status_code == 400, check.text


@pytest.mark.parametrize("changes", HARMFUL.values(), ids=HARMFUL.keys())
def test_harmful_values_in_the_file_or_environment_are_named(tmp_path, changes):
    key, value = next(iter(changes.items()))
    (tmp_path / "config.json").write_text(json.dumps(changes))
    with pytest.raises(ConfigInvalid) as err:
        config_mod.load(tmp_path, environ={})
    assert key in err.value.message
    if isinstance(value, str) and not value.isdigit():  # the environment's text "4" is the number 4
        with pytest.raises(ConfigInvalid) as err:
            config_mod.load(None, environ={config_mod.ENV_PREFIX + key.upper(): value})
        assert config_mod.ENV_PREFIX + key.upper() in err.value.message


def test_replacing_the_file_keeps_the_store_folder_and_the_token(start):
    app = start(json.dumps({"store_path": "team-store", "token": "team-token-1", "display_name": "x"}))
    headers = {"X-SageMaker-Token": "team-token-1"}
    (app.config_dir / "config.json").write_text('{"store_path": "team-store", "token": ')  # broken by hand
    r = app.request("PUT", "/sagemaker/config", headers=headers,
                    json={"replace": True, "changes": {"display_name": "y", "role": "designer"}})
    assert r.status_code == 200, r.text
    data = json.loads((app.config_dir / "config.json").read_text())
    assert data == {"store_path": "team-store", "token": "team-token-1", "display_name": "y", "role": "designer"}
    assert app.request("GET", "/sagemaker/connect", headers=headers).json()["effective"]["store_path"] == "team-store"
