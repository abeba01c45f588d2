"""The CloudFormation template (aws/stack.py and the file generated from it): cfn-lint's verdict on it,
its IAM documents being aws/iam's own, what the bucket, repository and build are given, its outputs
making a configuration the extension accepts, and the parameters refused before any AWS call."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from io import BytesIO
from pathlib import Path

import pytest
from comfyui_sagemaker.aws import setup as setup_mod
from comfyui_sagemaker.aws import stack
from comfyui_sagemaker.core import config as config_mod

ROOT = Path(__file__).resolve().parents[2]


def test_the_template_file_is_the_generators_output():
    assert stack.TEMPLATE_FILE.read_text() == stack.template_json(), (
        "aws/comfyui-sagemaker.template.json is stale: run ./dev python -c "
        "'from comfyui_sagemaker.aws import stack; stack.write_template_file()'")


def cfn_lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), "--format", "parseable", str(path)],
                          capture_output=True, text=True, timeout=300)


def test_cfn_lint_finds_nothing():
    r = cfn_lint(stack.TEMPLATE_FILE)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cfn_lint_would_see_a_mistake(tmp_path):
    broken = stack.template()
    broken["Resources"]["Repository"]["Properties"]["ImageScanning"] = True  # no such property
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    r = cfn_lint(tmp_path / "broken.json")
    assert r.returncode != 0 and "ImageScanning" in r.stdout, r.stdout + r.stderr


def _statements(doc: dict, kms: bool) -> list[dict]:
    st = doc["Statement"]
    return st["Fn::If"][1 if kms else 2]


def _placeholders_back(value):
    """The stack's references turned back into aws/iam's placeholders."""
    text = json.dumps(value).replace("arn:${AWS::Partition}:", "arn:aws:")  # aws/iam/*.json name the commercial one
    for placeholder, ref in stack.SUBSTITUTIONS.items():
        text = text.replace(ref.replace("\\", "\\\\"), placeholder)
    value = json.loads(text.replace("${!aws:", "${aws:"))  # an IAM policy variable, escaped for Fn::Sub

    def unsub(v):
        if v == {"Ref": "AllowedInstanceTypes"}:  # the parameter's default is the file's list
            return stack.template()["Parameters"]["AllowedInstanceTypes"]["Default"].split(",")
        if isinstance(v, dict) and set(v) == {"Fn::Sub"}:
            return v["Fn::Sub"]
        if isinstance(v, dict):
            return {k: unsub(x) for k, x in v.items()}
        if isinstance(v, list):
            return [unsub(x) for x in v]
        return v

    return unsub(value)


@pytest.mark.parametrize("name", ["designer", "artist", "execution-role", "gateway"])
def test_the_stacks_policies_are_aws_iams_documents(name):
    source = json.loads((ROOT / "aws" / "iam" / f"{name}-policy.json").read_text())["Statement"]
    generated = stack.policy_document(name)
    without_kms = _placeholders_back(_statements(generated, kms=False))
    with_kms = _placeholders_back(_statements(generated, kms=True))
    expected = [s for s in source if s.get("Sid") != stack.KMS_SID]
    assert without_kms == expected
    assert [s for s in with_kms if s.get("Sid") != stack.KMS_SID] == expected
    kms = [s for s in source if s.get("Sid") == stack.KMS_SID]
    assert [s["Action"] for s in with_kms if s.get("Sid") == stack.KMS_SID] == [s["Action"] for s in kms]


def test_the_bucket_is_private_encrypted_tls_only_and_expires_what_is_temporary():
    resources = stack.template()["Resources"]
    bucket = resources["StoreBucket"]
    assert bucket["DeletionPolicy"] == "Retain"
    props = bucket["Properties"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["Fn::If"][0] == "HasKmsKey"
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["async-requests-and-results"]["Prefix"] == {"Fn::Sub": "${StorePrefix}/async/"}
    assert rules["expired-execution-records"]["Prefix"] == {"Fn::Sub": "${StorePrefix}/executions/"}
    assert "AbortIncompleteMultipartUpload" in rules["unfinished-uploads"]
    tls = resources["StoreBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert tls["Effect"] == "Deny" and tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert "LifecyclePolicy" in resources["Repository"]["Properties"]


def test_the_build_reads_the_uploaded_source_and_builds_the_workers_dockerfile():
    build = stack.template()["Resources"]["ImageBuild"]["Properties"]
    assert build["Source"]["Location"] == {"Fn::Sub": "${StoreBucket}/${StorePrefix}/" + stack.SOURCE_KEY}
    assert "-f worker/Dockerfile" in build["Source"]["BuildSpec"]
    assert build["Environment"]["PrivilegedMode"] is True
    names = zipfile.ZipFile(BytesIO(setup_mod.source_zip())).namelist()
    assert {"worker/Dockerfile", "pyproject.toml", "__init__.py", "__main__.py"} <= set(names)
    assert not [n for n in names if n.startswith((".dev/", ".git/")) or "__pycache__" in n]


def test_a_copy_without_git_uploads_its_files_but_caches_and_what_dockerignore_leaves_out(tmp_path):
    (tmp_path / "worker").mkdir()
    (tmp_path / "worker" / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text("")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "a.pyc").write_bytes(b"")
    (tmp_path / ".dockerignore").write_text("tests\n")
    assert setup_mod.source_files(tmp_path) == [".dockerignore", "__init__.py", "worker/Dockerfile"]


def test_the_outputs_make_a_configuration_the_extension_accepts(tmp_path):
    outputs = set(stack.template()["Outputs"])
    out = {k: "x" for k in outputs} | {
        "StoreBucket": "team-store", "StorePrefix": "comfyui", "Region": "eu-west-1",
        "SageMakerRoleArn": "arn:aws:iam::123456789012:role/r",
        "KmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/abcd", "AllowedInstanceTypes": "ml.g5.*,ml.g6.xlarge",
        "NotificationTopicArn": "arn:aws:sns:eu-west-1:123456789012:stack-AsyncResultsTopic-ABC"}
    cfg = setup_mod.configuration(out, "eu-west-1", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/"
                                  "comfyui-sagemaker-worker@sha256:" + "c" * 64)
    (tmp_path / "config.json").write_text(json.dumps({"token": "kept-token", "role": "designer"}))
    setup_mod.write_configuration(tmp_path, cfg)
    loaded = config_mod.load(tmp_path)
    assert (loaded.store, loaded.s3_bucket, loaded.s3_sse, loaded.role) == ("s3", "team-store", "aws:kms", "designer")
    assert loaded.allowed_instance_types == ("ml.g5.*", "ml.g6.xlarge")  # the designer policy's list
    assert loaded.notification_topic_arn == out["NotificationTopicArn"]  # async results by notification
    assert json.loads((tmp_path / "config.json").read_text())["token"] == "kept-token"


@pytest.mark.parametrize(("parameters", "said"), [
    ({"Bucket": "x"}, "the stack has no parameter Bucket"),
    ({"BucketName": "Not_A_Bucket"}, "BucketName 'Not_A_Bucket' is not valid"),
    ({"KmsKeyArn": "alias/mine"}, "KmsKeyArn 'alias/mine' is not valid"),
    ({"RetentionDays": "0"}, "RetentionDays must be a whole number from 1 to 3650"),
    ({"RetentionDays": "ten"}, "must be a whole number"),
])
def test_a_bad_parameter_is_refused_before_any_aws_call(parameters, said):
    def no_aws(service):
        raise AssertionError(f"{service} called")

    with pytest.raises(setup_mod.SetupError, match=said):
        setup_mod.setup(setup_mod.Aws("us-east-1", no_aws), "comfyui-sagemaker", parameters, None, print)


def test_a_bad_stack_name_is_refused_before_any_aws_call():
    def no_aws(service):
        raise AssertionError(f"{service} called")

    with pytest.raises(setup_mod.SetupError, match="not a stack name"):
        setup_mod.setup(setup_mod.Aws("us-east-1", no_aws), "1 stack", {}, None, print)
