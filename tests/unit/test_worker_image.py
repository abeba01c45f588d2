"""Image tags and digests (issue 28, point 10), against AWS's documented answers through botocore's Stubber:
the repository's tags are immutable, each build gets its own (the source's digest, never `latest`), the
configuration names the image by digest, and ECR's lifecycle rule can select only untagged images, so it
never expires an image an endpoint config names."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import Stubber
from comfyui_sagemaker.aws import setup as setup_mod
from comfyui_sagemaker.aws import stack, worker_image
from comfyui_sagemaker.aws.setup import Aws, SetupError

pytestmark = pytest.mark.stubber

REPOSITORY = "comfyui-sagemaker-worker"
URI = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{REPOSITORY}"
DIGEST = "sha256:" + "b" * 64
TAG = worker_image.source_tag(b"the source zip")
NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


@pytest.fixture
def ecr(aws_env):
    client = boto3.client("ecr", region_name="us-east-1")
    stub = Stubber(client)
    stub.activate()
    yield Aws("us-east-1", lambda service: client), stub
    stub.assert_no_pending_responses()


def absent(stub, tag: str = TAG) -> None:
    """ECR API Reference, DescribeImages: a tag no image carries is ImageNotFoundException (400)."""
    stub.add_client_error("describe_images", "ImageNotFoundException",
                          f"The image with imageId {{imageDigest:'null', imageTag:'{tag}'}} does not exist within the "
                          f"repository with name '{REPOSITORY}' in the registry with id '123456789012'",
                          http_status_code=400,
                          expected_params={"repositoryName": REPOSITORY, "imageIds": [{"imageTag": tag}]})


def present(stub, tag: str = TAG) -> None:
    stub.add_response("describe_images", {"imageDetails": [
        {"registryId": "123456789012", "repositoryName": REPOSITORY, "imageDigest": DIGEST, "imageTags": [tag],
         "imagePushedAt": NOW}]}, {"repositoryName": REPOSITORY, "imageIds": [{"imageTag": tag}]})


def test_a_build_gets_the_sources_tag_and_the_configuration_its_digest(ecr):
    aws, stub = ecr
    absent(stub)
    present(stub)
    built: list[str] = []
    said: list[str] = []
    assert worker_image.ensure(aws, URI, TAG, built.append, said.append) == f"{URI}@{DIGEST}"
    assert built == [TAG] and TAG.startswith("src-") and len(TAG) == 20
    assert said[-1] == f"worker image {REPOSITORY}:{TAG} is {DIGEST}"


def test_the_same_source_is_not_built_twice(ecr):
    aws, stub = ecr
    present(stub)
    built: list[str] = []
    assert worker_image.ensure(aws, URI, TAG, built.append, print) == f"{URI}@{DIGEST}"
    assert built == []


def test_a_given_tag_that_exists_is_refused_not_taken_for_this_source(ecr):
    aws, stub = ecr
    present(stub, "v3")
    with pytest.raises(worker_image.ImageError, match="v3 exists already and the repository's tags are immutable"):
        worker_image.ensure(aws, URI, "v3", lambda tag: pytest.fail("built"), print, given=True)


def test_no_build_pins_an_image_pushed_by_hand_or_names_the_tag_to_push(ecr):
    aws, stub = ecr
    present(stub, "v3")
    assert worker_image.ensure(aws, URI, "v3", None, print) == f"{URI}@{DIGEST}"
    absent(stub, "v4")
    said: list[str] = []
    assert worker_image.ensure(aws, URI, "v4", None, said.append) == f"{URI}:v4"
    assert "push it with that tag" in said[-1] and "names it by digest" in said[-1]


def test_a_build_that_pushed_nothing_is_said(ecr):
    aws, stub = ecr
    absent(stub)
    absent(stub)
    with pytest.raises(worker_image.ImageError, match="the build succeeded but ECR has no"):
        worker_image.ensure(aws, URI, TAG, lambda tag: None, print)


@pytest.mark.parametrize(("tag", "said"), [("latest", "would name every build"), ("-x", "is not valid"),
                                           ("a" * 129, "is not valid")])
def test_a_moving_or_invalid_tag_is_refused_before_any_aws_call(tag, said):
    def no_aws(service):
        raise AssertionError(f"{service} called")

    with pytest.raises(SetupError, match=said):
        setup_mod.setup(Aws("us-east-1", no_aws), "comfyui-sagemaker", {}, None, print, image_tag=tag)


def test_the_build_is_started_with_its_tag(aws_env):
    client = boto3.client("codebuild", region_name="us-east-1")
    stub = Stubber(client)
    override = [{"name": "IMAGE_TAG", "value": TAG, "type": "PLAINTEXT"}]
    stub.add_response("start_build", {"build": {"id": "img:3"}},
                      {"projectName": "img", "environmentVariablesOverride": override})
    stub.add_response("batch_get_builds", {"builds": [{"id": "img:3", "buildStatus": "SUCCEEDED"}]}, {"ids": ["img:3"]})
    with stub:
        said: list[str] = []
        setup_mod.build_image(Aws("us-east-1", lambda service: client), "img", said.append, poll=0, tag=TAG)
    assert said[0] == f"building the worker image {TAG} (img:3)"


def test_the_repository_is_immutable_and_its_lifecycle_never_selects_a_tagged_image():
    template = stack.template()
    repository = template["Resources"]["Repository"]["Properties"]
    assert repository["ImageTagMutability"] == "IMMUTABLE"
    rules = json.loads(repository["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
    # Every image an endpoint config names is a build's, tagged for good: a rule may only select untagged ones.
    assert rules and all(r["selection"]["tagStatus"] == "untagged" for r in rules), rules
    assert all(r["selection"]["countType"] == "sinceImagePushed" for r in rules), rules
    text = stack.template_json()
    assert "latest" not in text and "ImageTag" not in template["Parameters"]
    assert "IMAGE_TAG=${IMAGE_TAG:-build-$CODEBUILD_BUILD_NUMBER}" in stack.BUILDSPEC  # a build by hand: its own


def test_the_configuration_names_the_image_by_digest():
    out = {"StoreBucket": "b", "StorePrefix": "p", "SageMakerRoleArn": "arn:aws:iam::123456789012:role/r"}
    assert setup_mod.configuration(out, "us-east-1", f"{URI}@{DIGEST}")["worker_image_uri"] == f"{URI}@{DIGEST}"


def test_setup_without_a_build_names_the_tag_to_push_then_pins_the_pushed_image(aws_env, tmp_path):
    """On moto (in process): the whole of `aws setup --no-build`, twice, around a push by hand."""
    moto = pytest.importorskip("moto")
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}
    with moto.mock_aws():
        aws = Aws("us-east-1", lambda service: boto3.client(service, region_name="us-east-1"))
        first = setup_mod.setup(aws, "wi-moto", {}, tmp_path, print, build=False, poll=0)
        repository, tag = first["worker_image_uri"].split("/", 1)[1].split(":")
        assert tag == worker_image.source_tag(setup_mod.source_zip())
        pushed = aws("ecr").put_image(repositoryName=repository, imageManifest=json.dumps(index), imageTag=tag,
                                      imageManifestMediaType=index["mediaType"])["image"]["imageId"]["imageDigest"]
        second = setup_mod.setup(aws, "wi-moto", {}, tmp_path, print, build=False, poll=0)
        assert second["worker_image_uri"] == first["worker_image_uri"].replace(f":{tag}", f"@{pushed}")
        assert json.loads((tmp_path / "config.json").read_text())["worker_image_uri"] == second["worker_image_uri"]


def test_the_manual_repository_is_not_the_one_the_stack_makes_and_its_tags_are_immutable():
    """Following docs/operations.md first must not make `aws setup` fail on an existing repository."""
    manual = (stack.TEMPLATE_FILE.parents[1] / "docs" / "operations.md").read_text()
    created = re.findall(r"aws ecr create-repository --repository-name (\S+)(.*)", manual)
    assert created, "the manual no longer creates a repository: keep this test in step"
    for name, rest in created:
        assert name != setup_mod.repository_name("comfyui-sagemaker"), name
        assert "--image-tag-mutability IMMUTABLE" in rest
    assert ":latest" not in manual and "@sha256:" in manual  # the configuration names the image by digest
