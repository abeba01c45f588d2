"""SageMaker hosting instance types, one row per family: GPUs per size, the inference AMI, or why refused.

The one table for what an endpoint runs on. The worker runs one ComfyUI per GPU (one on the CPU when the
type has none), so the GPUs set an async endpoint's MaxConcurrentInvocationsPerInstance and the
autoscaling target; the AMI is the ProductionVariant's InferenceAmiVersion; a refused family is a 400 at
publish with its reason. tests/unit/test_instance_families.py holds the table against botocore's
`ProductionVariantInstanceType` and `ProductionVariantInferenceAmiVersion` enums: every hosting type is
covered by a row, and no row names a type SageMaker lacks.

Sources: GPUs per size from AWS Batch "Run GPU jobs" and the EC2 "Accelerated computing instances"
specifications; AMIs from SageMaker's "Best practices to minimize interruptions during GPU driver
upgrades" (inference-gpu-drivers) and the InferenceAmiVersion documentation in the service model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# The worker image is CUDA 12.4 (worker/Dockerfile, torch cu124): this AMI has NVIDIA driver 550 / CUDA 12.4.
# SageMaker's default AMI on GPU types has driver 470 / CUDA 11.4, where that torch would not see the GPU.
GPU_AMI = "al2-ami-sagemaker-inference-gpu-3-1"

_BLACKWELL = ("NVIDIA Blackwell GPUs: the worker image's torch is built for CUDA 12.4 and has no Blackwell "
              "kernels (sm_100/sm_120 need CUDA 12.8 and driver 570 or newer, SageMaker's "
              "al2023-ami-sagemaker-inference-gpu-4-1); choose ml.g6e, ml.p5 or ml.p5e/p5en instead")
_NEURON = ("AWS {chip} accelerators: ComfyUI needs NVIDIA GPUs (CUDA) and would run on the instance's CPU "
           "here, paying for the accelerators; choose a GPU type such as ml.g5.xlarge")
_GRAVITON = ("AWS Graviton (arm64): the worker image is built for x86_64 only and would not start; "
             "choose an x86 type (ml.m5, ml.c5, ...) or a GPU type such as ml.g5.xlarge")


@dataclass(frozen=True)
class Family:
    """A family's sizes, with the GPUs of each (absent: none the worker uses), and how it runs."""

    sizes: tuple[str, ...]
    gpus: Mapping[str, int] = field(default_factory=dict)
    ami: str | None = None  # InferenceAmiVersion; None: SageMaker's default AMI (CPU types)
    refused: str | None = None  # why the worker cannot run on it, in the words the user reads


def _gpu(**gpus: int) -> Family:
    """An NVIDIA family the worker image supports: size=GPUs (`x2` spells 2xlarge, `x` xlarge)."""
    counts = {_size(k): n for k, n in gpus.items()}
    return Family(tuple(counts), counts, GPU_AMI)


def _size(key: str) -> str:
    return key[1:] + "xlarge" if key.startswith("x") else key


def _cpu(*sizes: str) -> Family:
    return Family(sizes)


def _refused(reason: str, *sizes: str) -> Family:
    return Family(sizes, refused=reason)


_XL = ("large", "xlarge", "2xlarge", "4xlarge")
FAMILIES: dict[str, Family] = {
    # NVIDIA GPUs the worker image runs on (Turing, Volta, Ampere, Ada, Hopper).
    "g4dn": _gpu(x=1, x2=1, x4=1, x8=1, x12=4, x16=1),
    "g5": _gpu(x=1, x2=1, x4=1, x8=1, x12=4, x16=1, x24=4, x48=8),
    "g6": _gpu(x=1, x2=1, x4=1, x8=1, x12=4, x16=1, x24=4, x48=8),
    "g6e": _gpu(x=1, x2=1, x4=1, x8=1, x12=4, x16=1, x24=4, x48=8),
    "p3": _gpu(x2=1, x8=4, x16=8),
    "p4d": _gpu(x24=8),
    "p4de": _gpu(x24=8),
    "p5": _gpu(x4=1, x48=8),
    "p5e": _gpu(x48=8),
    "p5en": _gpu(x48=8),
    # NVIDIA GPUs it does not run on.
    "p2": _refused("NVIDIA K80 (Kepler) GPUs: the worker image's torch (CUDA 12.4) has no Kepler kernels and "
                   "SageMaker's driver-550 AMI does not support them; choose ml.g4dn or ml.g5 instead",
                   "xlarge", "8xlarge", "16xlarge"),
    "g7": _refused(_BLACKWELL, "2xlarge", "4xlarge", "8xlarge", "12xlarge", "24xlarge", "48xlarge"),
    "g7e": _refused(_BLACKWELL, "2xlarge", "4xlarge", "8xlarge", "12xlarge", "24xlarge", "48xlarge"),
    "p6-b200": _refused(_BLACKWELL, "48xlarge"),
    "p6-b300": _refused(_BLACKWELL, "48xlarge"),
    "p6e-gb200": _refused(_BLACKWELL + "; its Grace CPUs are arm64 too", "36xlarge"),
    # Other accelerators: ComfyUI would fall back to the CPU.
    "inf1": _refused(_NEURON.format(chip="Inferentia"), "xlarge", "2xlarge", "6xlarge", "24xlarge"),
    "inf2": _refused(_NEURON.format(chip="Inferentia2"), "xlarge", "8xlarge", "24xlarge", "48xlarge"),
    "trn1": _refused(_NEURON.format(chip="Trainium"), "2xlarge", "32xlarge"),
    "trn1n": _refused(_NEURON.format(chip="Trainium"), "32xlarge"),
    "trn2": _refused(_NEURON.format(chip="Trainium2"), "48xlarge"),
    "dl1": _refused("Habana Gaudi accelerators: ComfyUI needs NVIDIA GPUs (CUDA) and would run on the CPU "
                    "here; choose a GPU type such as ml.g5.xlarge", "24xlarge"),
    # x86 CPUs: ComfyUI runs on the CPU (slow, but it runs), on SageMaker's default AMI.
    "t2": _cpu("medium", "large", "xlarge", "2xlarge"),
    "c4": _cpu(*_XL, "8xlarge"),
    "c5": _cpu(*_XL, "9xlarge", "18xlarge"),
    "c5d": _cpu(*_XL, "9xlarge", "18xlarge"),
    "c6i": _cpu(*_XL, "8xlarge", "12xlarge", "16xlarge", "24xlarge", "32xlarge"),
    "c6in": _cpu(*_XL, "8xlarge", "12xlarge", "16xlarge", "24xlarge", "32xlarge"),
    "c7i": _cpu(*_XL, "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge"),
    "m4": _cpu("xlarge", "2xlarge", "4xlarge", "10xlarge", "16xlarge"),
    "m5": _cpu(*_XL, "12xlarge", "24xlarge"),
    "m5d": _cpu(*_XL, "12xlarge", "24xlarge"),
    "m6i": _cpu(*_XL, "8xlarge", "12xlarge", "16xlarge", "24xlarge", "32xlarge"),
    "m7i": _cpu(*_XL, "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge"),
    "r5": _cpu(*_XL, "12xlarge", "24xlarge"),
    "r5d": _cpu(*_XL, "12xlarge", "24xlarge"),
    "r6i": _cpu(*_XL, "8xlarge", "12xlarge", "16xlarge", "24xlarge", "32xlarge"),
    "r7i": _cpu(*_XL, "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge"),
    # Graviton (arm64) CPUs.
    **{name: _refused(_GRAVITON, *sizes) for name, sizes in {
        "c6g": (*_XL, "8xlarge", "12xlarge", "16xlarge"), "c6gd": (*_XL, "8xlarge", "12xlarge", "16xlarge"),
        "c6gn": (*_XL, "8xlarge", "12xlarge", "16xlarge"), "c7g": (*_XL, "8xlarge", "12xlarge", "16xlarge"),
        "m6g": (*_XL, "8xlarge", "12xlarge", "16xlarge"), "m6gd": (*_XL, "8xlarge", "12xlarge", "16xlarge"),
        "r6g": (*_XL, "8xlarge", "12xlarge", "16xlarge"), "r6gd": (*_XL, "8xlarge", "12xlarge", "16xlarge"),
        "r7gd": ("medium", *_XL, "8xlarge", "12xlarge", "16xlarge"),
        "c8g": ("medium", *_XL, "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge"),
        "m8g": ("medium", *_XL, "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge"),
        "r8g": ("medium", *_XL, "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge"),
    }.items()},
}

# Offered in the UI (web/js/endpoint_form.js lists the same); any other supported type may be typed.
COMMON_GPU_TYPES = (
    "ml.g4dn.xlarge", "ml.g4dn.2xlarge", "ml.g5.xlarge", "ml.g5.2xlarge", "ml.g5.4xlarge",
    "ml.g6.xlarge", "ml.g6.2xlarge", "ml.g6e.xlarge", "ml.g6e.2xlarge", "ml.p4d.24xlarge",
)


def _parts(instance_type: str) -> tuple[str, str]:
    _, family, size = (instance_type.split(".", 2) + ["", ""])[:3]
    return family, size


def family_of(instance_type: str) -> Family | None:
    """The row of an `ml.<family>.<size>` type (None for a family not in the table)."""
    return FAMILIES.get(_parts(instance_type)[0])


def refusal(instance_type: str) -> str | None:
    """Why the worker cannot run on this type, in the user's words; None when it can."""
    family, size = _parts(instance_type)
    row = FAMILIES.get(family)
    if row is None:
        return (f"{instance_type} is not a SageMaker hosting instance type this version knows "
                "(GPU types: " + ", ".join(f"ml.{n}" for n, f in FAMILIES.items() if f.gpus and not f.refused) + ")")
    if size not in row.sizes:
        return f"ml.{family} comes in sizes {', '.join(row.sizes)}, not {size!r}"
    if row.refused:
        return f"{instance_type} is not supported: {row.refused}"
    return None


def gpu_count(instance_type: str) -> int:
    """GPUs of a type the worker uses, as ComfyUIs per instance: 1 when it has none (one on the CPU)."""
    family, size = _parts(instance_type)
    row = FAMILIES.get(family)
    return max(1, row.gpus.get(size, 0)) if row else 1


def inference_ami(instance_type: str) -> str | None:
    """The ProductionVariant's InferenceAmiVersion for this type (None: SageMaker's default)."""
    row = family_of(instance_type)
    return row.ami if row else None
