"""Which instance types this configuration lets an endpoint run on: the `allowed_instance_types` list.

One list, three enforcers: the server refuses an endpoint config outside it (core/endpoint_config.py, on
publish, deploy and start), and the designer policy's `sagemaker:InstanceTypes` condition on
CreateEndpointConfig carries the same entries (aws/iam/designer-policy.json, the stack's
AllowedInstanceTypes parameter), so a designer's credentials cannot create one outside it either.
An entry is a type (`ml.g5.xlarge`) or a family (`ml.g5.*`): IAM's StringLike wildcard, so the policy's
condition is the list itself (IAM User Guide, "Condition operators": StringLike, `*` any characters).
"""

from __future__ import annotations

import fnmatch
import re

from .instance_families import FAMILIES

ENTRY = re.compile(r"ml\.[a-z0-9-]+\.([a-z0-9]+|\*)")
MAX_ENTRIES = 64
# The default: every NVIDIA GPU family the worker image runs on (core/instance_families.py). CPU families
# run ComfyUI too, slowly: a studio that wants them adds them to the list.
DEFAULT: tuple[str, ...] = tuple(f"ml.{name}.*" for name, family in FAMILIES.items()
                                 if family.gpus and not family.refused)


def entries(value: object) -> tuple[str, ...]:
    """The list from the file (a JSON list) or the environment (text separated by commas or spaces);
    ValueError naming the entry that is not `ml.<family>.<size>` or `ml.<family>.*`."""
    if isinstance(value, str):
        value = [e for e in value.replace(",", " ").split() if e]
    if not isinstance(value, (list, tuple)) or not all(isinstance(e, str) for e in value):
        raise ValueError("it is not a list of instance types")
    if not value:
        raise ValueError("it is empty: no endpoint could be deployed")
    if len(value) > MAX_ENTRIES:
        raise ValueError(f"it has {len(value)} entries")
    for entry in value:
        if not ENTRY.fullmatch(entry):
            raise ValueError(f"{entry[:80]!r} is not an instance type such as ml.g5.xlarge or a family such as ml.g5.*")
    return tuple(value)


def allows(allowed: tuple[str, ...], instance_type: str) -> bool:
    """IAM's StringLike on one value: `*` matches any characters, case-sensitive."""
    return any(fnmatch.fnmatchcase(instance_type, entry.replace("[", "[[]")) for entry in allowed)


def refusal(allowed: tuple[str, ...], instance_type: str) -> str | None:
    if allows(allowed, instance_type):
        return None
    return (f"{instance_type} is not in this configuration's allowed_instance_types ({', '.join(allowed)}); "
            "an administrator may add it")
