"""aws doctor's surfaces: the CLI prints each line and exits 1 on a failure; POST /connect/doctor is a
designer's change (refused to an artist), documented in the OpenAPI document with its body."""

from __future__ import annotations

import pytest
from comfyui_sagemaker import cli
from comfyui_sagemaker.aws import doctor, setup
from comfyui_sagemaker.server_routes import ROUTE_TABLES, openapi, policy

LINES = [doctor.line("missing key reads as 404", "pass", "HEAD: 404"),
         doctor.line("instance quota", "fail", "'ml.g5.xlarge for endpoint usage' is 0", "request an increase")]


@pytest.fixture
def stack(monkeypatch, aws_env):
    out = {"StoreBucket": "team-store", "StorePrefix": "comfyui", "WorkerImageUri": "x"}
    monkeypatch.setattr(setup, "describe", lambda aws, name: {"Outputs": [
        {"OutputKey": k, "OutputValue": v} for k, v in out.items()]})
    seen = {}

    def run(target, client, roles=()):
        seen.update(target=target, roles=list(roles))
        return seen["lines"]

    monkeypatch.setattr(doctor, "run", run)
    return seen


def test_the_cli_prints_each_line_with_its_fix_and_exits_1_on_a_failure(stack, capsys):
    stack["lines"] = LINES
    code = cli.main(["aws", "doctor", "--region", "us-east-1", "--instance-type", "ml.g6.xlarge",
                     "--assume-role", "arn:aws:iam::123456789012:role/artist"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "PASS  missing key reads as 404: HEAD: 404" in printed
    assert "FAIL  instance quota: 'ml.g5.xlarge for endpoint usage' is 0\n      fix: request an increase" in printed
    assert stack["target"].bucket == "team-store" and stack["target"].instance_type == "ml.g6.xlarge"
    assert stack["roles"] == ["arn:aws:iam::123456789012:role/artist"]


def test_the_cli_exits_0_when_nothing_fails(stack, capsys):
    stack["lines"] = [LINES[0], doctor.line("endpoint log", "skip", "no endpoint")]
    assert cli.main(["aws", "doctor", "--region", "us-east-1"]) == 0


def test_the_route_is_a_designers_and_documented():
    with pytest.raises(policy.ForbiddenForRole, match="only a designer can check the AWS set-up"):
        policy.check("artist", "POST", "/connect/doctor")
    policy.check("designer", "POST", "/connect/doctor")
    doc = openapi.document(ROUTE_TABLES)
    post = doc["paths"]["/sagemaker/connect/doctor"]["post"]
    assert "aws doctor" in post["summary"]
    assert "requestBody" in post
