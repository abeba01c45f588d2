"""From the folder store to an S3 store without a restart (issue: Connect panel): `aws setup` on moto
(CloudFormation, S3, IAM, ECR; the image build simulated by pushing a manifest to moto's ECR, since
moto's CloudFormation makes no CodeBuild project), the Connect check on what it made, the configuration
applied live while a run on the old store is in flight, a file broken by hand, and the changes refused."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from harness.comfyui import ComfyUI
from harness.envs import unique, wait_endpoint, wait_task
from harness.fixtures import install_test_pack
from harness.waiting import wait_for

pytestmark = pytest.mark.comfyui

ROOT = Path(__file__).resolve().parents[2]
STACK = "cs-connect"
INDEX = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1000,
                        "digest": "sha256:" + "b" * 64, "platform": {"os": "linux", "architecture": "amd64"}}]}


def held(signal: str) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 1}},
            "2": {"class_type": "SMTestWait", "inputs": {"image": ["1", 0], "signal": signal, "timeout": 600}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "held"}}}


def cli(moto_server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT), *args], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", **moto_server.env(), "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                               "AWS_CONFIG_FILE": "/dev/null"})


@pytest.fixture(scope="module")
def designer(moto_server, tmp_path_factory):
    base = tmp_path_factory.mktemp("connect")
    install_test_pack(base)
    server = ComfyUI(base, env=moto_server.env()).start()
    yield server
    server.stop()


def test_folder_store_to_s3_without_a_restart(designer, moto_server, tmp_path):
    client = designer.client()
    config_dir = designer.user_dir / "__sagemaker"
    connect = client.get("/sagemaker/connect").json()
    assert connect["effective"]["store"] == "folder" and connect["file"]["error"] is None
    assert connect["file"]["differs"] is False and connect["file"]["values"] == connect["effective"]

    # A run on a local endpoint of the folder store, held open across the switch.
    signal = str(tmp_path / "release")
    template, env = unique("H"), unique("E")
    assert client.post("/sagemaker/templates", json={"name": template, "workflow": held(signal),
                                                     "prompt": held(signal)}).status_code == 201
    r = client.post("/sagemaker/environments", json={"name": env, "templates": [template],
                                                      "endpoint": {"kind": "local"}})
    assert r.status_code == 202 and wait_task(client, r.json()["task"]["id"])["state"] == "succeeded"
    assert client.put(f"/sagemaker/templates/{template}", json={"environment": env}).status_code == 200
    assert wait_endpoint(client, env, timeout=300)["state"] == "InService"
    r = client.post("/sagemaker/executions", json={"prompt": held(signal), "template": template,
                                                   "client_id": uuid.uuid4().hex})
    assert r.status_code == 202, r.text
    running = r.json()["execution_id"]
    wait_for(lambda: client.get(f"/sagemaker/executions/{running}").json()["state"] == "running")

    # The admin's one command writes this ComfyUI's configuration; nothing changes until it is applied.
    r = cli(moto_server, "aws", "setup", "--stack", STACK, "--region", "us-east-1", "--prefix", "studio",
            "--config-dir", str(config_dir), "--no-build")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"stack {STACK}: CREATE_COMPLETE" in r.stdout and "uploaded the source" in r.stdout
    written = json.loads((config_dir / "config.json").read_text())
    assert written["store"] == "s3" and written["s3_prefix"] == "studio"
    connect = client.get("/sagemaker/connect").json()
    assert connect["file"]["differs"] is True and connect["effective"]["store"] == "folder"
    assert connect["file"]["values"]["s3_bucket"] == written["s3_bucket"]  # what applying the file would make

    # The image build, simulated: moto's CloudFormation makes no CodeBuild project, so push a manifest.
    repository, tag = written["worker_image_uri"].split("/", 1)[1].split(":")  # --no-build: the tag to push
    moto_server.client("ecr").put_image(repositoryName=repository, imageManifest=json.dumps(INDEX), imageTag=tag,
                                        imageManifestMediaType=INDEX["mediaType"])
    results = client.post("/sagemaker/connect/check", json={}).json()["results"]
    verdicts = {x["name"]: x["status"] for x in results}
    # moto has no IAM policy simulator: the one check AWS answers differently is a warning, said so.
    assert verdicts == {"credentials": "ok", "region": "ok", "bucket": "ok", "execution role": "ok",
                        "worker image": "ok", "permissions": "warning"}, results
    assert "linux/amd64" in next(x["detail"] for x in results if x["name"] == "worker image")

    r = client.put("/sagemaker/config", json={"changes": {}})
    assert r.status_code == 200, r.text
    health = client.get("/sagemaker/health").json()
    assert health["store"] == {"kind": "s3", "bucket": written["s3_bucket"], "prefix": "studio"}
    assert client.get("/sagemaker/templates").json()["templates"] == []  # the new store's
    assert client.get("/sagemaker/connect").json()["file"]["differs"] is False
    s3_template = unique("S")
    assert client.post("/sagemaker/templates", json={"name": s3_template, "workflow": held(signal),
                                                     "prompt": held(signal)}).status_code == 201
    index = moto_server.client("s3").get_object(Bucket=written["s3_bucket"], Key="studio/templates/index.json")
    assert s3_template in index["Body"].read().decode()

    # The run in flight finishes on the old store, its output where /view serves it.
    Path(signal).write_text("go")
    folder_record = next(iter((config_dir / "store" / "executions" / "records").rglob(f"{running}.json")))
    wait_for(lambda: json.loads(folder_record.read_text())["state"] == "succeeded")
    assert list((designer.output_dir / "sagemaker" / running).glob("*.png"))

    # Running setup again is safe: same stack, same configuration, but for the image pushed since, now named by
    # its digest. (CloudFormation answers "No updates are to be performed" to an unchanged template and
    # parameters, tests/unit/test_aws_setup_requests.py.)
    r = cli(moto_server, "aws", "setup", "--stack", STACK, "--region", "us-east-1", "--prefix", "studio",
            "--config-dir", str(config_dir), "--no-build")
    assert r.returncode == 0, r.stdout + r.stderr
    again = json.loads((config_dir / "config.json").read_text())
    pinned = again.pop("worker_image_uri")
    assert again == {k: v for k, v in written.items() if k != "worker_image_uri"}
    assert pinned.startswith(written["worker_image_uri"].replace(f":{tag}", "@sha256:")), pinned
    r = cli(moto_server, "aws", "status", "--stack", STACK, "--region", "us-east-1", "--json")
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["status"] in ("CREATE_COMPLETE", "UPDATE_COMPLETE") and pinned.endswith(f"@{status['image_digest']}")
    assert status["drift"].startswith("not available here")  # moto has no drift detection
    client.delete(f"/sagemaker/endpoints/{env}")


def test_a_file_broken_by_hand_keeps_the_last_good_configuration(designer):
    client = designer.client()
    path = designer.user_dir / "__sagemaker" / "config.json"
    good = path.read_text() if path.exists() else "{}"
    before = client.get("/sagemaker/health").json()["store"]
    try:
        path.write_text('{"store": "s3", ')
        connect = client.get("/sagemaker/connect").json()
        assert "not readable JSON" in connect["file"]["error"] and connect["effective"] is not None
        assert client.get("/sagemaker/health").json()["store"] == before
        assert client.get("/sagemaker/templates").status_code == 200
        r = client.put("/sagemaker/config", json={"changes": {"display_name": "studio"}})
        assert r.status_code == 400 and "fix the file, or replace it" in r.json()["error"]["message"], r.text
        values = {k: v for k, v in json.loads(good).items()}
        r = client.put("/sagemaker/config", json={"changes": values, "replace": True})
        assert r.status_code == 200, r.text
        assert client.get("/sagemaker/connect").json()["file"]["error"] is None
    finally:
        path.write_text(good)


@pytest.mark.parametrize(("changes", "said"), [
    ({"store_path": "/tmp/elsewhere"}, "store_path cannot be changed here"),
    ({"colour": "blue"}, "unknown configuration key 'colour'"),
    ({"store": "s3", "s3_bucket": None}, "store is s3 but s3_bucket is not set"),
    ({"role": "admin"}, "must be designer or artist"),
    ({"max_instances": 0}, "must be a whole number from 1 to 100"),
    ("s3", "must be an object"),
])
def test_a_change_that_would_break_the_configuration_writes_nothing(designer, changes, said):
    client = designer.client()
    path = designer.user_dir / "__sagemaker" / "config.json"
    before = path.read_text() if path.exists() else None
    r = client.put("/sagemaker/config", json={"changes": changes})
    assert r.status_code == 400 and r.json()["error"]["code"] == "config_invalid", r.text
    assert said in r.json()["error"]["message"]
    assert (path.read_text() if path.exists() else None) == before


def test_the_token_is_write_only_and_changes_are_same_origin(designer):
    client = designer.client()
    r = client.put("/sagemaker/config", json={"changes": {"display_name": "x"}},
                   headers={"Origin": "http://evil.example"})
    assert r.status_code == 403, r.text
    secret = uuid.uuid4().hex
    page = client.websocket(uuid.uuid4().hex)  # an open page: no token was needed, so it never subscribed
    try:
        r = client.put("/sagemaker/config", json={"changes": {"token": secret}})
        assert r.status_code == 200 and secret not in r.text and r.json()["effective"]["token"] is True
        page.settimeout(120)
        while (event := json.loads(page.recv()))["type"] != "sagemaker.changed":
            pass
        assert event["data"] == {"collection": "config"}  # it learns, and then asks for the token
    finally:
        page.close()
    authorized = {"X-SageMaker-Token": secret}
    refused = client.get("/sagemaker/connect")  # the token now guards this ComfyUI, from the next request on
    assert refused.status_code == 403 and "X-SageMaker-Token" in refused.json()["error"]["message"]
    connect = client.get("/sagemaker/connect", headers=authorized)
    assert secret not in connect.text and connect.json()["effective"]["token"] is True
    r = client.put("/sagemaker/config", json={"changes": {"token": None}}, headers=authorized)
    assert r.status_code == 200 and r.json()["effective"]["token"] is False


def test_teardown_checks_first_deletes_endpoints_first_and_a_bucket_with_data_only_when_told(designer, moto_server):
    """It removes the S3 store the first test moved this ComfyUI to."""
    client = designer.client()
    assert client.get("/sagemaker/health").json()["store"]["kind"] == "s3"
    template, env = unique("T"), unique("E")
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 1}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}}}
    assert client.post("/sagemaker/templates", json={"name": template, "workflow": prompt,
                                                     "prompt": prompt}).status_code == 201
    r = client.post("/sagemaker/environments", json={"name": env, "templates": [template], "endpoint": {
        "kind": "sagemaker", "instance_type": "ml.g4dn.xlarge", "initial_count": 1, "mode": "async"}})
    assert r.status_code == 202 and wait_task(client, r.json()["task"]["id"])["state"] == "succeeded", r.text
    endpoint = wait_endpoint(client, env)
    assert endpoint["state"] == "InService", endpoint
    bucket = client.get("/sagemaker/health").json()["store"]["bucket"]

    r = cli(moto_server, "aws", "teardown", "--stack", STACK, "--region", "us-east-1")
    assert r.returncode == 1 and "1 endpoint(s) still run" in r.stderr and "--force" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = cli(moto_server, "aws", "teardown", "--stack", STACK, "--region", "us-east-1", "--force")
    assert r.returncode == 1 and f"bucket {bucket} still holds objects" in r.stderr, r.stdout + r.stderr
    assert "nothing was deleted" in r.stderr  # checked first: the endpoint still runs
    assert len(moto_server.client("sagemaker").list_endpoints()["Endpoints"]) == 1
    r = cli(moto_server, "aws", "teardown", "--stack", STACK, "--region", "us-east-1", "--force", "--delete-data")
    assert r.returncode == 0, r.stdout + r.stderr
    assert moto_server.client("sagemaker").list_endpoints()["Endpoints"] == []
    models = moto_server.client("sagemaker").list_models()["Models"]
    assert not [m for m in models if env.lower() in m["ModelName"]], models  # its config and model too
    assert f"deleted bucket {bucket}" in r.stdout
    assert bucket not in [b["Name"] for b in moto_server.client("s3").list_buckets()["Buckets"]]
    r = cli(moto_server, "aws", "status", "--stack", STACK, "--region", "us-east-1", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "absent", r.stdout + r.stderr
    r = cli(moto_server, "aws", "teardown", "--stack", STACK, "--region", "us-east-1")  # again: nothing to do
    assert r.returncode == 0 and "nothing to remove" in r.stdout


def test_a_designer_who_makes_this_comfyui_an_artist_can_no_longer_change_it(designer):
    """Last in this module: only the file (or a restart) makes it a designer again."""
    client = designer.client()
    path = designer.user_dir / "__sagemaker" / "config.json"
    good = path.read_text() if path.exists() else "{}"
    try:
        assert client.put("/sagemaker/config", json={"changes": {"role": "artist"}}).status_code == 200
        r = client.put("/sagemaker/config", json={"changes": {"role": "designer"}})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_for_role", r.text
        assert "change the configuration" in r.json()["error"]["message"]
        assert client.post("/sagemaker/connect/check", json={}).status_code == 403
        assert client.get("/sagemaker/connect").status_code == 200
    finally:
        path.write_text(good)
