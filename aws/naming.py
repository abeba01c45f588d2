"""SageMaker resource names and tags for an environment's endpoint.

Names come from the environment's name, its version and a short digest of the
store location, so two stores in one account never collide; lowercase, `-`
only, at most 63 characters. The endpoint's name is stable across versions
(updates happen in place); models and endpoint configs carry the version.
"""

from __future__ import annotations

import hashlib
import re

PREFIX = "cs"
TAG_STORE = "comfyui-sagemaker:store"
TAG_ENVIRONMENT = "comfyui-sagemaker:environment"
TAG_VERSION = "comfyui-sagemaker:version"
VARIANT = "AllTraffic"


def store_digest(store_uri: str) -> str:
    return hashlib.sha256(store_uri.encode()).hexdigest()[:8]


def _clean(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def endpoint_name(environment: str, store_uri: str) -> str:
    name = f"{PREFIX}-{_clean(environment)}-{store_digest(store_uri)}"
    assert len(name) <= 63, name
    return name


def versioned_name(environment: str, version: int, store_uri: str) -> str:
    """The model's and the endpoint config's name for one version."""
    name = f"{endpoint_name(environment, store_uri)}-v{version}"
    assert len(name) <= 63, name
    return name


def proof_endpoint_name(environment: str, store_uri: str) -> str:
    """The temporary endpoint a new version is proven on before an update (aws/sagemaker_proofs.py): ends with
    the store's digest like the environment's endpoint (teardown finds it), never another environment's name
    (environment names have no `-`)."""
    name = f"{PREFIX}-{_clean(environment)}-proof-{store_digest(store_uri)}"
    assert len(name) <= 63, name
    return name


def is_proof_endpoint(name: str) -> bool:
    return re.fullmatch(rf"{PREFIX}-[a-z0-9]+-proof-[0-9a-f]{{8}}", name) is not None


def resource_id(endpoint: str) -> str:
    return f"endpoint/{endpoint}/variant/{VARIANT}"


def alarm_name(endpoint: str) -> str:
    return f"{endpoint}-has-backlog-without-capacity"


def idle_alarm_name(endpoint: str) -> str:
    return f"{endpoint}-idle"


def errors_alarm_name(endpoint: str) -> str:
    """The alarm on the endpoint's errors SageMaker watches during an update (aws/deploy_guardrails.py)."""
    return f"{endpoint}-errors"


def alarm_names(endpoint: str) -> list[str]:
    """Every alarm the extension makes for an endpoint: they go with it (aws/autoscaling.py's remove)."""
    return [alarm_name(endpoint), idle_alarm_name(endpoint), errors_alarm_name(endpoint)]


def tags(environment: str, version: int | None, store_uri: str) -> list[dict]:
    out = [{"Key": TAG_STORE, "Value": store_digest(store_uri)}, {"Key": TAG_ENVIRONMENT, "Value": environment}]
    if version is not None:
        out.append({"Key": TAG_VERSION, "Value": str(version)})
    return out
