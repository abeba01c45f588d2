"""What the update guardrails need of IAM (issue 30), in the stack's policies as AWS evaluates them: a designer
reads the instance type's endpoint quota before a deploy, and SageMaker, with the execution role, reads the
rollback alarm the update names (Developer Guide, "Auto-Rollback Configuration and Monitoring")."""

from __future__ import annotations

import pytest
from comfyui_sagemaker.aws import iam_actions, naming
from harness.iam_semantics import ACCOUNT, REGION, allows, stack_policy

ENDPOINT = naming.endpoint_name("Portraits", "s3://team-store/comfyui")
ALARM_ARN = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:"
QUOTA_READS = ("servicequotas:ListServiceQuotas", "servicequotas:ListAWSDefaultServiceQuotas")


@pytest.mark.parametrize("action", QUOTA_READS)
def test_a_designer_reads_the_instance_quota_a_deploy_checks(action):
    assert allows(stack_policy("designer"), action, "*")
    assert action in iam_actions.UNSCOPED  # ListServiceQuotas and its default twin take no resource


def test_the_execution_role_lets_sagemaker_read_the_rollback_alarm_and_no_other():
    role = stack_policy("execution-role")
    assert allows(role, "cloudwatch:DescribeAlarms", ALARM_ARN + naming.errors_alarm_name(ENDPOINT))
    assert not allows(role, "cloudwatch:DescribeAlarms", ALARM_ARN + "someone-elses-alarm")

