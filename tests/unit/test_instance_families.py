"""The instance family table (core/instance_families.py) against the installed botocore's SageMaker service
model: every hosting type (`ProductionVariantInstanceType`) is covered by a row, supported or refused; no row
names a type SageMaker lacks; each AMI is an `InferenceAmiVersion` whose CUDA is the worker image's. Then what
the table decides: a refused type is a 400 `invalid_endpoint_config` with its reason, never deployed; the
variant carries the family's AMI; multi-GPU sizes count every GPU."""

from __future__ import annotations

import re
from pathlib import Path

import botocore.session
import pytest
from comfyui_sagemaker.aws.sagemaker_endpoints import SageMakerEndpoints
from comfyui_sagemaker.core import endpoint_config
from comfyui_sagemaker.core.endpoint_config import EndpointConfigInvalid
from comfyui_sagemaker.core.instance_families import (
    COMMON_GPU_TYPES,
    FAMILIES,
    GPU_AMI,
    gpu_count,
    inference_ami,
    refusal,
)
from harness.dockerfile import image_cuda

ROOT = Path(__file__).resolve().parents[2]
MODEL = botocore.session.get_session().get_service_model("sagemaker")
HOSTING = set(MODEL.shape_for("ProductionVariantInstanceType").enum)
AMI = MODEL.shape_for("ProductionVariant").members["InferenceAmiVersion"]
TABLE = {f"ml.{name}.{size}" for name, family in FAMILIES.items() for size in family.sizes}


def manifest(instance_type: str, mode: str = "async") -> dict:
    return {"name": "Portraits", "version": 1, "endpoint": {"kind": "sagemaker", "instance_type": instance_type,
                                                             "initial_count": 1, "mode": mode, "autoscaling": None}}


EVERY = tuple(f"ml.{name}.*" for name in FAMILIES)  # these tests are the family table's, not the allow list's


def endpoints() -> SageMakerEndpoints:
    return SageMakerEndpoints("s3://b/p", "arn:aws:iam::123456789012:role/R", "image", "us-east-1",
                              allowed_instance_types=EVERY)


def test_every_hosting_type_sagemaker_knows_has_a_row_and_no_row_names_one_it_lacks():
    assert sorted(HOSTING - TABLE) == [], "hosting types without a family row (add them, supported or refused)"
    assert sorted(TABLE - HOSTING) == [], "rows naming types SageMaker's ProductionVariantInstanceType lacks"
    for name, family in FAMILIES.items():
        assert set(family.gpus) <= set(family.sizes), name
        assert family.refused or family.ami is None or family.gpus, name  # an AMI only where there are GPUs
        assert not (family.refused and family.ami), name  # a refused family is never deployed


def test_each_ami_is_an_inference_ami_version_with_the_worker_images_cuda():
    cuda = image_cuda()  # the base's, from its tag (harness/dockerfile.py)
    for ami in {f.ami for f in FAMILIES.values() if f.ami}:
        assert ami in AMI.enum, ami
        section = AMI.documentation.split(f"<dt>{ami}</dt>", 1)[1].split("</dd>", 1)[0]
        assert re.search(r"CUDA version: ([\d.]+)", section).group(1) == cuda, ami


# GPUs per size as AWS documents them (AWS Batch "Run GPU jobs", EC2 "Accelerated computing instances").
@pytest.mark.parametrize("instance_type, gpus", [
    ("ml.g4dn.xlarge", 1), ("ml.g4dn.12xlarge", 4), ("ml.g4dn.16xlarge", 1),
    ("ml.g5.xlarge", 1), ("ml.g5.12xlarge", 4), ("ml.g5.16xlarge", 1), ("ml.g5.24xlarge", 4), ("ml.g5.48xlarge", 8),
    ("ml.g6.12xlarge", 4), ("ml.g6.48xlarge", 8), ("ml.g6e.xlarge", 1), ("ml.g6e.24xlarge", 4),
    ("ml.g6e.48xlarge", 8), ("ml.p3.2xlarge", 1), ("ml.p3.8xlarge", 4), ("ml.p3.16xlarge", 8),
    ("ml.p4d.24xlarge", 8), ("ml.p4de.24xlarge", 8), ("ml.p5.4xlarge", 1), ("ml.p5.48xlarge", 8),
    ("ml.p5e.48xlarge", 8), ("ml.p5en.48xlarge", 8),
    ("ml.m5.xlarge", 1), ("ml.c5.large", 1),  # no GPU: one ComfyUI on the CPU
])
def test_gpus_per_size(instance_type, gpus):
    assert gpu_count(instance_type) == gpus


@pytest.mark.parametrize("instance_type, why", [
    ("ml.p2.xlarge", "Kepler"), ("ml.p2.16xlarge", "Kepler"),
    ("ml.g7e.2xlarge", "Blackwell"), ("ml.g7.48xlarge", "Blackwell"), ("ml.p6-b200.48xlarge", "Blackwell"),
    ("ml.p6e-gb200.36xlarge", "arm64"),
    ("ml.inf2.xlarge", "Inferentia2"), ("ml.trn1.2xlarge", "Trainium"), ("ml.inf1.xlarge", "Inferentia"),
    ("ml.dl1.24xlarge", "Gaudi"), ("ml.c7g.xlarge", "Graviton"), ("ml.m6g.large", "arm64"),
    ("ml.g5.96xlarge", "ml.g5 comes in sizes"), ("ml.x9.xlarge", "not a SageMaker hosting instance type"),
])
def test_a_refused_type_is_a_400_saying_why(aws_env, instance_type, why):
    with pytest.raises(EndpointConfigInvalid) as err:
        endpoint_config.validate(manifest(instance_type)["endpoint"], 4)
    assert err.value.code == "invalid_endpoint_config"
    assert why in str(err.value) and instance_type.split(".")[1] in str(err.value)
    with pytest.raises(EndpointConfigInvalid, match=why):  # a version published before is not deployed either
        endpoints().endpoint_config_request(manifest(instance_type))


def test_supported_types_pass_and_the_variant_carries_the_familys_ami(aws_env):
    for instance_type in sorted(TABLE):
        family = FAMILIES[instance_type.split(".")[1]]
        if family.refused:
            assert refusal(instance_type), instance_type
            continue
        assert refusal(instance_type) is None, instance_type
        assert endpoint_config.validate(manifest(instance_type)["endpoint"], 4, EVERY)["instance_type"] == instance_type
        variant = endpoints().endpoint_config_request(manifest(instance_type))["ProductionVariants"][0]
        assert variant.get("InferenceAmiVersion") == family.ami == inference_ami(instance_type), instance_type
    assert inference_ami("ml.p5e.48xlarge") == GPU_AMI and inference_ami("ml.m5.xlarge") is None


def test_the_types_offered_in_the_ui_are_supported():
    offered = re.findall(r'"(ml\.[^"]+)"', (ROOT / "web" / "js" / "endpoint_form.js").read_text())
    assert offered and set(offered) <= set(COMMON_GPU_TYPES) | {"ml.g5.xlarge"}
    for instance_type in {*offered, *COMMON_GPU_TYPES}:
        assert refusal(instance_type) is None and gpu_count(instance_type) >= 1, instance_type
