"""`aws setup --monthly-budget N --budget-email A` (aws/stack.py's Budget, aws/budget.py): the resource's shape
against CloudFormation's own schema of AWS::Budgets::Budget (cfn-lint's copy) and its values against the Budgets
service model; made only when asked, refused before any AWS call when nobody would hear of it, and shown by
`aws status` with what Budgets has counted (DescribeBudget through botocore's Stubber)."""

from __future__ import annotations

import json
from datetime import datetime

import boto3
import botocore.session
import jsonschema
import pytest
from botocore.stub import Stubber
from comfyui_sagemaker import cli, cli_aws
from comfyui_sagemaker.aws import budget, stack
from comfyui_sagemaker.aws import setup as setup_mod

pytestmark = pytest.mark.stubber

STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/comfyui-sagemaker/1"


def _resolved(value, refs: dict):
    """The template's value with each Ref / Fn::Sub replaced by what CloudFormation would put there."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return refs[value["Ref"]]
        if set(value) == {"Fn::Sub"}:
            return value["Fn::Sub"].replace("${AWS::StackName}", "comfyui-sagemaker")
        return {k: _resolved(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolved(v, refs) for v in value]
    return value


def test_the_budget_has_cloudformations_shape_and_the_budgets_apis_values():
    from cfnlint.schema.manager import PROVIDER_SCHEMA_MANAGER

    resource = stack.template()["Resources"]["Budget"]
    assert resource["Type"] == "AWS::Budgets::Budget" and resource["Condition"] == "HasBudget"
    properties = _resolved(resource["Properties"], {"MonthlyBudget": 300, "BudgetEmail": "studio@example.com"})
    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", "AWS::Budgets::Budget").schema
    jsonschema.validate(properties, schema)  # additionalProperties false all the way down: no misspelt field
    model = botocore.session.get_session().get_service_model("budgets")
    data, (notify,) = properties["Budget"], properties["NotificationsWithSubscribers"]
    for shape, value in (("BudgetType", data["BudgetType"]), ("TimeUnit", data["TimeUnit"]),
                         ("NotificationType", notify["Notification"]["NotificationType"]),
                         ("ComparisonOperator", notify["Notification"]["ComparisonOperator"]),
                         ("ThresholdType", notify["Notification"]["ThresholdType"]),
                         ("SubscriptionType", notify["Subscribers"][0]["SubscriptionType"])):
        assert value in model.shape_for(shape).enum, (shape, value)
    assert (data["BudgetType"], data["TimeUnit"], data["BudgetLimit"]) == ("COST", "MONTHLY",
                                                                           {"Amount": 300, "Unit": "USD"})
    assert notify["Notification"] == {"NotificationType": "FORECASTED", "ComparisonOperator": "GREATER_THAN",
                                      "Threshold": 100, "ThresholdType": "PERCENTAGE"}
    assert notify["Subscribers"] == [{"SubscriptionType": "EMAIL", "Address": "studio@example.com"}]
    assert "CostFilters" not in data and "FilterExpression" not in data  # the whole account: see aws/stack.py


def test_no_budget_unless_asked_and_never_one_that_tells_nobody():
    t = stack.template()
    assert t["Parameters"]["MonthlyBudget"]["Default"] == 0  # 0: the condition is false, no budget is made
    assert t["Conditions"]["HasBudget"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "MonthlyBudget"}, "0"]}]}
    assert t["Outputs"]["BudgetName"] == {"Condition": "HasBudget", "Value": {"Ref": "Budget"}}
    rule = t["Rules"]["BudgetNeedsAnEmail"]
    assert rule["RuleCondition"] == t["Conditions"]["HasBudget"]
    with pytest.raises(setup_mod.SetupError, match="--budget-email"):
        setup_mod.check_parameters({"MonthlyBudget": "300"})
    with pytest.raises(setup_mod.SetupError, match="BudgetEmail"):
        setup_mod.check_parameters({"MonthlyBudget": "300", "BudgetEmail": "not an address"})
    setup_mod.check_parameters({"MonthlyBudget": "300", "BudgetEmail": "studio@example.com"})
    setup_mod.check_parameters({"MonthlyBudget": "0"})  # removes it


def test_the_cli_passes_the_budget_to_the_stack(monkeypatch, tmp_path):
    seen = {}

    def setup(aws, name, parameters, config_dir, say, **kw):
        seen.update(parameters)
        return {}

    monkeypatch.setattr(setup_mod, "setup", setup)
    monkeypatch.setattr(cli_aws, "_aws", lambda args: None)
    args = cli.parser().parse_args(["aws", "setup", "--monthly-budget", "300", "--budget-email", "studio@example.com",
                                    "--config-dir", str(tmp_path)])
    assert args.func(args) == 0
    assert seen["MonthlyBudget"] == "300" and seen["BudgetEmail"] == "studio@example.com"


def described(with_budget: bool) -> dict:
    return {"StackName": "comfyui-sagemaker", "StackId": STACK_ID, "StackStatus": "UPDATE_COMPLETE",
            "CreationTime": datetime(2026, 1, 1),
            "Parameters": [{"ParameterKey": "MonthlyBudget", "ParameterValue": "300" if with_budget else "0"},
                           {"ParameterKey": "BudgetEmail", "ParameterValue": "studio@example.com"}],
            "Outputs": [{"OutputKey": "BudgetName", "OutputValue": "comfyui-sagemaker-monthly"}] if with_budget else []}


def test_aws_status_shows_the_budget_and_what_budgets_counted(aws_env):
    clients = {s: boto3.client(s, region_name="us-east-1") for s in ("cloudformation", "budgets")}
    stubs = {s: Stubber(c) for s, c in clients.items()}
    for stub in stubs.values():
        stub.activate()
    stubs["cloudformation"].add_response("describe_stacks", {"Stacks": [described(True)]},
                                         {"StackName": "comfyui-sagemaker"})
    stubs["budgets"].add_response("describe_budget", {"Budget": {
        "BudgetName": "comfyui-sagemaker-monthly", "BudgetType": "COST", "TimeUnit": "MONTHLY",
        "BudgetLimit": {"Amount": "300.0", "Unit": "USD"},
        "CalculatedSpend": {"ActualSpend": {"Amount": "41.5", "Unit": "USD"},
                            "ForecastedSpend": {"Amount": "188.25", "Unit": "USD"}}}},
        {"AccountId": "123456789012", "BudgetName": "comfyui-sagemaker-monthly"})
    report = setup_mod.status(setup_mod.Aws("us-east-1", lambda s: clients[s]), "comfyui-sagemaker")
    assert report["budget"] == ("comfyui-sagemaker-monthly: 300.00 USD a month, the whole account; spent 41.50 USD "
                                "so far, forecast 188.25 USD; a forecast over it emails studio@example.com")
    stubs["budgets"].assert_no_pending_responses()
    assert budget.status(clients["budgets"], described(False)) == f"none ({budget.HOW})"
    stubs["budgets"].add_client_error("describe_budget", "AccessDeniedException", "not allowed")
    assert "spend not readable: AccessDeniedException" in budget.status(clients["budgets"], described(True))
    json.dumps(report)  # `aws status --json` prints it
