"""The worker image's Dockerfile read as Docker reads it (issue 28, points 3 and 12; Docker cannot run here):
its base comes from a registry CodeBuild pulls without Docker Hub's anonymous rate limit, as `ARG BASE`
pinned by digest, with the CUDA the inference AMI's driver runs; the worker does not keep root (SageMaker
starts containers as root, so the image names the user the worker becomes and gives it its folders); the
buildspec builds this Dockerfile with its own base."""

from __future__ import annotations

import re

import pytest
from comfyui_sagemaker.aws import stack
from comfyui_sagemaker.core.instance_families import GPU_AMI
from harness.dockerfile import DOCKERFILE, args_before_from, env, image_cuda, instructions

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}")
# Registries a CodeBuild build pulls from without Docker Hub's anonymous limit: ECR Public (its Docker
# Official Images mirror, its Deep Learning Containers) and AWS's Deep Learning Containers' private ECR.
AWS_REGISTRIES = re.compile(r"(public\.ecr\.aws|\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com)/.+")


STEPS = instructions(DOCKERFILE.read_text())
BASE = args_before_from(STEPS).get("BASE", "")


def test_the_base_is_arg_base_from_an_aws_registry_not_docker_hub():
    froms = [rest for word, rest in STEPS if word == "FROM"]
    assert froms and froms[0] in ("${BASE}", "$BASE"), froms
    assert AWS_REGISTRIES.fullmatch(BASE), f"BASE {BASE!r} is not on ECR Public or AWS's DLC registry"
    assert "docker.io" not in BASE and not BASE.startswith("pytorch/")


@pytest.mark.xfail(strict=True, reason="the digest of the base's tag must be read from public.ecr.aws, which this "
                                       "machine cannot reach: run tools/pin_base_image.py where it can (then this "
                                       "test passes and strict xfail fails: remove this mark)")
def test_the_base_is_pinned_by_digest():
    assert DIGEST.search(BASE), BASE


def test_the_bases_cuda_is_the_inference_amis():
    import botocore.session

    ami = botocore.session.get_session().get_service_model("sagemaker").shape_for(
        "ProductionVariant").members["InferenceAmiVersion"]
    section = ami.documentation.split(f"<dt>{GPU_AMI}</dt>", 1)[1].split("</dd>", 1)[0]
    assert re.search(r"CUDA version: ([\d.]+)", section).group(1) == image_cuda()


def test_the_worker_gives_root_up_to_a_user_the_image_makes_and_owns_its_folders():
    users = [word for word, _ in STEPS if word == "USER"]
    # SageMaker starts the container as root (its container contract); a USER, if any, is never root.
    assert all(rest.split(":")[0] not in ("root", "0") for word, rest in STEPS if word == "USER"), users
    variables = env(STEPS)
    user = variables.get("WORKER_USER")
    assert user, "no WORKER_USER: the worker would run the environment's custom nodes as root"
    run = " ".join(rest for word, rest in STEPS if word == "RUN")
    made = re.search(rf"useradd [^&;]*--uid \$\{{WORKER_UID\}}[^&;]* {re.escape(user)}\b", run)
    uid = args_before_from([(w, r) for w, r in STEPS if w == "ARG"]).get("WORKER_UID") or next(
        r.partition("=")[2] for w, r in STEPS if w == "ARG" and r.startswith("WORKER_UID="))
    assert made and int(uid) != 0, run
    owned = re.search(rf"chown {re.escape(user)}:{re.escape(user)} ([^&;]+)", run)
    assert owned and set(owned.group(1).split()) >= {variables["WORKER_CACHE_DIR"], variables["WORKER_BASE_DIR"]}


def test_the_buildspec_builds_this_dockerfile_on_its_own_base():
    build = next(line for line in stack.BUILDSPEC.splitlines() if "docker build" in line)
    assert "-f worker/Dockerfile" in build
    assert "--build-arg BASE" not in stack.BUILDSPEC  # the Dockerfile's pinned base, not one the build picks
    assert "docker.io" not in stack.BUILDSPEC and "pytorch/pytorch" not in stack.BUILDSPEC


def test_the_pinning_tool_writes_the_registrys_digest_into_arg_base():
    """tools/pin_base_image.py, its registry answer stood in for (ECR Public is out of reach here)."""
    import importlib.util

    path = DOCKERFILE.parents[1] / "tools" / "pin_base_image.py"
    spec = importlib.util.spec_from_file_location("pin_base_image", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    asked: list[tuple[str, str]] = []
    digest = "sha256:" + "d" * 64
    text = tool.pinned(DOCKERFILE.read_text(), lambda repo, tag: asked.append((repo, tag)) or digest)
    base = args_before_from(instructions(text))["BASE"]
    assert base == f"{BASE.split('@')[0]}@{digest}" and DIGEST.search(base)
    assert asked == [tuple(BASE.split("@")[0].removeprefix("public.ecr.aws/").split(":", 1))]
    assert tool.pinned(text, lambda repo, tag: digest) == text  # pinned again: the same line
