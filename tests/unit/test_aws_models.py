"""What AWS's own service models (the installed botocore) document, against this project's choices."""

from __future__ import annotations

import re

import botocore.session
from comfyui_sagemaker.aws.sagemaker_endpoints import SageMakerEndpoints
from comfyui_sagemaker.core.instance_families import GPU_AMI as GPU_INFERENCE_AMI
from harness.dockerfile import image_cuda


def manifest(instance_type: str) -> dict:
    return {"name": "Portraits", "version": 1, "endpoint": {"kind": "sagemaker", "instance_type": instance_type,
                                                             "initial_count": 1, "mode": "async", "autoscaling": None}}


def test_gpu_instances_run_on_the_inference_ami_whose_cuda_matches_the_worker_image(aws_env):
    """SageMaker's default inference AMI on GPU instances has driver 470 / CUDA 11.4: torch built for the
    image's CUDA would not see the GPU. The AMI set on GPU variants must carry the image's CUDA."""
    endpoints = SageMakerEndpoints("s3://b/p", "arn:aws:iam::123456789012:role/R", "image", "us-east-1",
                                   allowed_instance_types=("ml.*",))  # CPU types too: the AMI is the point here
    for gpu in ("ml.g4dn.xlarge", "ml.g5.12xlarge", "ml.g6.xlarge", "ml.p4d.24xlarge"):
        variant = endpoints.endpoint_config_request(manifest(gpu))["ProductionVariants"][0]
        assert variant["InferenceAmiVersion"] == GPU_INFERENCE_AMI, gpu
    cpu = endpoints.endpoint_config_request(manifest("ml.m5.xlarge"))["ProductionVariants"][0]
    assert "InferenceAmiVersion" not in cpu
    shape = botocore.session.get_session().get_service_model("sagemaker").shape_for("ProductionVariant")
    ami = shape.members["InferenceAmiVersion"]
    assert GPU_INFERENCE_AMI in ami.enum
    section = ami.documentation.split(f"<dt>{GPU_INFERENCE_AMI}</dt>", 1)[1].split("</dd>", 1)[0]
    ami_cuda = re.search(r"CUDA version: ([\d.]+)", section).group(1)
    assert ami_cuda == image_cuda(), ami_cuda  # the base's, from its tag (harness/dockerfile.py)
