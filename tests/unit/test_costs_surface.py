"""What runs and what it costs, through its faces, on a folder store with local endpoints (harness.fake_comfy):
GET /sagemaker/costs read by a designer and by an artist alike, one row per endpoint at $0, the store's bytes by
prefix; documented in the OpenAPI document with its answer; `comfyui-sagemaker costs` asking a running ComfyUI
(--url) or computing from a configuration without one (--config-dir)."""

from __future__ import annotations

import json
import os

import pytest
from comfyui_sagemaker import cli
from comfyui_sagemaker.core import config as config_mod
from comfyui_sagemaker.local.folder_store import FolderStore
from comfyui_sagemaker.server_routes import ROUTE_TABLES, openapi
from harness.fake_comfy import FakeComfy, publish
from harness.fake_endpoints import FakeEndpoints


@pytest.fixture
def team(tmp_path):
    store = FolderStore(tmp_path / "store")
    fake = FakeEndpoints(store)
    designer = FakeComfy(tmp_path / "designer", store, fake).serve()
    artist = FakeComfy(tmp_path / "artist", store, fake, role="artist").serve()
    for name in ("Sketches", "Drafts"):
        fake.deploy(publish(store, name))
        fake.wait_state(name)
    yield designer, artist, store
    designer.close()
    artist.close()
    fake.close()


def test_every_role_reads_a_row_per_endpoint_at_no_cost_and_the_store_by_prefix(team):
    designer, artist, _ = team
    for face in (designer, artist):
        r = face.get("/sagemaker/costs")
        assert r.status_code == 200, r.text
        report = r.json()
        rows = {e["name"]: e for e in report["endpoints"]}
        assert set(rows) == {"Sketches", "Drafts"}
        for e in rows.values():
            assert e["kind"] == "local" and e["state"] == "InService" and e["instances"] == 1
            assert e["hourly"] == 0 and e["cost_today"] == 0 and e["cost_month"] == 0
            assert len(e["days"]) == 30
        assert report["totals"]["hourly"] == 0 and report["totals"]["month"] == 0
        storage = report["storage"]
        assert storage["kind"] == "folder" and storage["monthly"] == 0
        prefixes = {p["prefix"]: p for p in storage["prefixes"]}
        # publish() put the environments' manifests and the lora's blob in the store.
        assert prefixes["blobs/"]["objects"] == 1 and prefixes["environments/"]["objects"] >= 2
        assert storage["bytes"] == sum(p["bytes"] for p in storage["prefixes"])
        assert len(report["days"]) == 30 and report["series"]["step_s"] == 3600


def test_a_bad_query_is_refused_in_the_routes_words(team):
    designer, _, _ = team
    assert designer.get("/sagemaker/costs?fresh=maybe").status_code == 200  # a flag: anything else is false
    assert designer.get("/sagemaker/costs?fresh=1").json()["endpoints"]


def test_the_route_is_documented_with_its_answer():
    doc = openapi.document(ROUTE_TABLES)
    get = doc["paths"]["/sagemaker/costs"]["get"]
    assert "what it costs" in get["summary"]
    assert [p["name"] for p in get.get("parameters", [])] == ["fresh"]
    answer = get["responses"]["2XX"]["content"]["application/json"]["schema"]
    schema = doc["components"]["schemas"][answer["$ref"].rsplit("/", 1)[1]] if "$ref" in answer else answer
    assert {"endpoints", "storage", "totals", "days", "series", "unavailable"} <= set(schema["properties"])


def test_the_cli_asks_a_running_comfyui_and_prints_each_endpoint(team, capsys):
    designer, _, _ = team
    assert cli.main(["costs", "--url", designer.url]) == 0
    printed = capsys.readouterr().out
    assert "Sketches [local, InService]: 1 local worker, $0.00/h" in printed
    assert "Drafts [local, InService]" in printed
    assert "storage (folder):" in printed and "  blobs/ 1 objects" in printed
    assert "total: $0.00/h now; $0.00 today; $0.00 this month" in printed
    assert cli.main(["costs", "--url", designer.url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {e["name"] for e in report["endpoints"]} == {"Sketches", "Drafts"}


def test_the_cli_computes_from_a_configuration_without_comfyui(tmp_path, capsys, monkeypatch):
    for var in [v for v in os.environ if v.startswith(config_mod.ENV_PREFIX)]:
        monkeypatch.delenv(var)
    store = FolderStore(tmp_path / "store")
    publish(store, "Sketches")
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / config_mod.CONFIG_FILE).write_text(json.dumps({"store": "folder",
                                                                  "store_path": str(tmp_path / "store")}))
    assert cli.main(["costs", "--config-dir", str(config_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["endpoints"] == []
    # Local endpoints run in the ComfyUI that started them: said, not hidden.
    assert [p["kind"] for p in report["unavailable"]] == ["local"], report["unavailable"]
    assert {p["prefix"] for p in report["storage"]["prefixes"]} == {"blobs/", "environments/"}


def test_an_endpoints_idle_time_comes_from_the_newest_run_recorded_on_it(team):
    from datetime import datetime, timedelta, timezone

    from comfyui_sagemaker.core.execution_records import ExecutionRecords
    from comfyui_sagemaker.core.executions import new_id

    designer, _, store = team
    ended = datetime.now(timezone.utc) - timedelta(hours=2)
    records = ExecutionRecords(store)
    for environment, state, finished in (("Sketches", "succeeded", ended.isoformat()), ("Drafts", "running", None)):
        records.create({"id": new_id("abcdefabcdef"), "state": state, "environment": environment,
                        "endpoint": environment, "created_at": (ended - timedelta(minutes=5)).isoformat(),
                        "finished_at": finished})
    rows = {e["name"]: e for e in designer.get("/sagemaker/costs").json()["endpoints"]}
    assert 2 * 3600 <= rows["Sketches"]["idle_s"] < 3 * 3600
    assert rows["Drafts"]["idle_s"] == 0  # a run on it now
