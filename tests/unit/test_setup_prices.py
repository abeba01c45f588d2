"""`aws setup` says what the stack itself costs, from core/prices.py's table, before it writes the
configuration (the stack's AWS calls replaced: tests/unit/test_aws_setup_requests.py holds their shapes)."""

from __future__ import annotations

from comfyui_sagemaker.aws import setup as setup_mod
from comfyui_sagemaker.core import prices

OUT = {"StoreBucket": "team-store", "StorePrefix": "comfyui", "Region": "us-east-1",
       "SageMakerRoleArn": "arn:aws:iam::123456789012:role/r",
       "RepositoryUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/comfyui-sagemaker-worker"}


def test_setup_says_the_stacks_prices(monkeypatch):
    monkeypatch.setattr(setup_mod, "account_of", lambda aws: "123456789012")
    monkeypatch.setattr(setup_mod, "ensure_stack", lambda *a, **k: {"Outputs": [
        {"OutputKey": k, "OutputValue": v} for k, v in OUT.items()]})
    monkeypatch.setattr(setup_mod, "upload_source", lambda *a, **k: None)
    monkeypatch.setattr(setup_mod.worker_image, "ensure", lambda *a, **k: OUT["RepositoryUri"] + "@sha256:" + "c" * 64)
    said: list[str] = []
    setup_mod.setup(setup_mod.Aws("us-east-1", lambda service: None), "comfyui-sagemaker", {}, None, said.append,
                    build=False)
    start = said.index(prices.stack_lines("us-east-1")[0])
    assert said[start:start + 6] == prices.stack_lines("us-east-1")
