"""IAM's policy simulator as AWS answers it, for botocore's Stubber: the requests Connect's Check must make
(each action on its resource, PassRole with its context; IAM API Reference "SimulatePrincipalPolicy") and
EvaluationResults of the documented shape (EvalDecision allowed | explicitDeny | implicitDeny,
MissingContextValues when a policy's condition key had no value in the simulation)."""

from __future__ import annotations

ACCOUNT = "123456789012"
NAME = "cs-connect-check"
PASSED_TO_SAGEMAKER = [{"ContextKeyName": "iam:PassedToService", "ContextKeyValues": ["sagemaker.amazonaws.com"],
                        "ContextKeyType": "string"}]


def expected_simulations(source: str, role: str, bucket: str, prefix: str, region: str = "us-east-1",
                         partition: str = "aws") -> list[dict]:
    sm = f"arn:{partition}:sagemaker:{region}:{ACCOUNT}"
    return [
        {"PolicySourceArn": source, "ActionNames": ["sagemaker:CreateModel"], "ResourceArns": [f"{sm}:model/{NAME}"]},
        {"PolicySourceArn": source, "ActionNames": ["sagemaker:CreateEndpointConfig"],
         "ResourceArns": [f"{sm}:endpoint-config/{NAME}"]},
        {"PolicySourceArn": source, "ActionNames": ["sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint",
                                                    "sagemaker:DeleteEndpoint", "sagemaker:InvokeEndpointAsync"],
         "ResourceArns": [f"{sm}:endpoint/{NAME}"]},
        {"PolicySourceArn": source, "ActionNames": ["application-autoscaling:RegisterScalableTarget"]},
        {"PolicySourceArn": source, "ActionNames": ["s3:PutObject"],
         "ResourceArns": [f"arn:{partition}:s3:::{bucket}/{prefix}/.connect-check"]},
        {"PolicySourceArn": source, "ActionNames": ["iam:PassRole"], "ResourceArns": [role],
         "ContextEntries": PASSED_TO_SAGEMAKER},
    ]


def answer(request: dict, decisions: dict[str, str], missing: dict[str, list[str]] | None = None) -> dict:
    """The simulator's answer to one request: one EvaluationResult per action (one resource each)."""
    out = []
    for action in request["ActionNames"]:
        resource = (request.get("ResourceArns") or ["*"])[0]
        decision = decisions.get(action, "allowed")
        item = {"EvalActionName": action, "EvalResourceName": resource, "EvalDecision": decision,
                "MatchedStatements": [], "MissingContextValues": (missing or {}).get(action, [])}
        if resource != "*":
            item["ResourceSpecificResults"] = [{"EvalResourceName": resource, "EvalResourceDecision": decision,
                                                "MatchedStatements": [],
                                                "MissingContextValues": item["MissingContextValues"]}]
        out.append(item)
    return {"EvaluationResults": out, "IsTruncated": False}


def stub_simulations(iam_stub, source: str, role: str, bucket: str, prefix: str, decisions: dict[str, str],
                     missing: dict[str, list[str]] | None = None) -> None:
    for request in expected_simulations(source, role, bucket, prefix):
        iam_stub.add_response("simulate_principal_policy", answer(request, decisions, missing), request)
