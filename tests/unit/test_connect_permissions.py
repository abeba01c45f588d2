"""Connect's permission check runs IAM's policy simulator as AWS documents it: each designer action on the
resource it acts on (ResourceArns), iam:PassRole with the context AWS gives it (iam:PassedToService =
sagemaker.amazonaws.com), so a designer the policy allows is not reported denied. The requests are checked
by botocore's Stubber against the IAM service model; the answers have the documented shape."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber
from comfyui_sagemaker.aws import connect
from comfyui_sagemaker.core.config import Config
from harness.simulator import answer, expected_simulations, stub_simulations

pytestmark = pytest.mark.stubber

ROLE = "arn:aws:iam::123456789012:role/comfyui-sagemaker-ExecutionRole-ABC"
SESSION = "arn:aws:sts::123456789012:assumed-role/Designer/alice"
SOURCE = "arn:aws:iam::123456789012:role/Designer"
CONFIG = Config(store="s3", s3_bucket="team-store", s3_prefix="comfyui", region="us-east-1",
                sagemaker_role_arn=ROLE)


@pytest.fixture
def iam(aws_env):
    client = boto3.client("iam", region_name="us-east-1")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def run(client, config=CONFIG, caller=SESSION) -> dict:
    return connect._permissions(caller, config, lambda service: {"iam": client}[service])


def test_each_action_is_simulated_on_its_resource_and_passrole_with_its_context(iam):
    client, stub = iam
    stub_simulations(stub, SOURCE, ROLE, "team-store", "comfyui", decisions={})
    got = run(client)
    assert got["status"] == "ok" and got["detail"] == f"{len(connect.DESIGNER_ACTIONS)} designer actions allowed"


def test_a_passrole_the_policy_conditions_on_the_service_is_allowed_with_the_context(iam):
    """Without ContextEntries the simulator answers PassRole implicitDeny with iam:PassedToService among
    MissingContextValues, for a policy that allows it: the request must carry the context (Stubber refuses a
    PassRole simulation without it)."""
    client, stub = iam
    requests = expected_simulations(SOURCE, ROLE, "team-store", "comfyui")
    passrole = next(r for r in requests if r["ActionNames"] == ["iam:PassRole"])
    assert passrole["ContextEntries"][0]["ContextKeyName"] == "iam:PassedToService"
    stub_simulations(stub, SOURCE, ROLE, "team-store", "comfyui", decisions={})
    assert run(client)["status"] == "ok"


def test_a_denial_names_the_action_and_a_missing_context_key(iam):
    client, stub = iam
    stub_simulations(stub, SOURCE, ROLE, "team-store", "comfyui",
                     decisions={"s3:PutObject": "explicitDeny", "sagemaker:CreateModel": "implicitDeny"},
                     missing={"sagemaker:CreateModel": ["aws:RequestTag/team"]})
    got = run(client)
    assert got["status"] == "failed"
    assert got["detail"] == ("not allowed: s3:PutObject, sagemaker:CreateModel "
                             "(the simulation lacked aws:RequestTag/team)")
    assert "DesignerPolicy" in got["fix"]


def test_an_iam_user_in_another_partition_is_simulated_with_that_partitions_arns(aws_env):
    client = boto3.client("iam", region_name="cn-north-1")
    role = "arn:aws-cn:iam::123456789012:role/comfyui-sagemaker-ExecutionRole-ABC"
    config = Config(store="s3", s3_bucket="team-store", s3_prefix="comfyui", region="cn-north-1",
                    sagemaker_role_arn=role)
    with Stubber(client) as stub:
        for request in expected_simulations("arn:aws-cn:iam::123456789012:user/bob", role, "team-store", "comfyui",
                                            region="cn-north-1", partition="aws-cn"):
            stub.add_response("simulate_principal_policy", answer(request, {}), request)
        assert run(client, config, "arn:aws-cn:iam::123456789012:user/bob")["status"] == "ok"
        stub.assert_no_pending_responses()


def test_no_simulator_is_still_a_warning(iam):
    client, stub = iam
    stub.add_client_error("simulate_principal_policy", "AccessDenied", "User: arn:aws:sts::123456789012:assumed-"
                          "role/Designer/alice is not authorized to perform: iam:SimulatePrincipalPolicy",
                          http_status_code=403)
    assert run(client)["status"] == "warning"
