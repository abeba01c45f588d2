"""The records the extension keeps and hands between its layers, each declared once: an execution's record,
an environment's manifest (with its endpoint config) and an endpoint's view. The worker's wire is declared
beside the worker's other promises (core/worker_contract.py).

They are `TypedDict`s: JSON as it is stored and served, typed for the checker (mypy, tests/unit/test_types.py)
at every `record["state"]`. What is read from the store is checked against them once, where it is read
(core/shapes.py); a field marked NotRequired may be absent from what an earlier version wrote.
"""

from __future__ import annotations

from typing import Any, Literal

# pydantic reads TypedDicts from typing_extensions only before Python 3.12 (it comes with pydantic).
from typing_extensions import NotRequired, TypedDict

# executions

ExecutionState = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class OwnerJson(TypedDict):
    """Who a run belongs to (core/identity.py's Owner)."""

    instance: str
    name: NotRequired[str]
    user: NotRequired[str | None]  # ComfyUI's user under --multi-user


class ExecutionError(TypedDict):
    """Why a run failed: a stable code and a message; a node's failure carries ComfyUI's own fields too."""

    code: str
    message: NotRequired[str]
    details: NotRequired[Any]  # the endpoint's own account (ComfyUI's validation answer)
    node_id: NotRequired[str | None]
    node_type: NotRequired[str | None]
    by: NotRequired[str]  # who ended someone else's run (a designer's cancel or Stop): the owner's page says so


WebhookState = Literal["pending", "sending", "delivered", "failed"]


class Webhook(TypedDict):
    """A run's webhook and how its delivery went (core/webhooks.py)."""

    url: str
    state: WebhookState
    attempts: int
    last_status: int | None
    last_error: str | None
    delivered_at: str | None


class V2Run(TypedDict):
    """Where a Comfy API v2 job was queued (core/v2/jobs_v2.py)."""

    origin: str
    prefix: str
    nodes: int
    prompt: NotRequired[str]  # sha256 of the prompt it ran, a blob (GET /jobs/{id}/workflow)


class ExecutionExtra(TypedDict, total=False):
    """What other faces keep on the records of the runs they queue (core/v2/jobs_v2.py)."""

    api: str  # the face ("v2")
    v2: V2Run
    labels: dict[str, str]


class ExecutionRecord(ExecutionExtra):
    """One prompt run on an endpoint (core/executions.py; its store layout: core/execution_records.py)."""

    id: str
    state: ExecutionState
    prompt_id: NotRequired[str]
    template: NotRequired[str | None]
    template_version: NotRequired[int | None]
    environment: NotRequired[str | None]
    environment_version: NotRequired[int | None]
    endpoint: NotRequired[str | None]  # None in a record written before it ran anywhere (as environment)
    owner: NotRequired[OwnerJson | None]  # None: a run of a version before team mode
    follower: NotRequired[str | None]  # the process following it (core/followers.py)
    client_id: NotRequired[str | None]  # the browser that queued it
    created_at: NotRequired[str]
    started_at: NotRequired[str | None]
    finished_at: NotRequired[str | None]
    inputs: NotRequired[dict[str, str] | None]  # file name -> sha256
    outputs: NotRequired[dict[str, Any] | None]  # node id -> ComfyUI's ui output, files by sha256
    error: NotRequired[ExecutionError | None]
    timings: NotRequired[dict[str, float] | None]
    workflow_saved: NotRequired[bool]
    note: NotRequired[str | None]  # a remark shown in the list (waiting for an instance)
    resume: NotRequired[dict[str, Any]]  # what Endpoints.resume needs to follow it from another process
    webhook: NotRequired[Webhook]
    # a template's run: the values its parameters had (what "Use this run as the proof" keeps; core/proofs.py)
    parameters: NotRequired[dict[str, Any] | None]
    outputs_error: NotRequired[str]  # never stored: why get() could not copy someone else's outputs here


class ExecutionSummary(TypedDict):
    """An execution as lists, answers and `sagemaker.execution` events show it: its record's public fields
    (None where the record has none), and whether it is the asker's own."""

    id: str
    prompt_id: str | None
    template: str | None
    template_version: int | None
    environment: str | None
    environment_version: int | None
    owner: OwnerJson | None
    state: ExecutionState
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    error: ExecutionError | None
    outputs: dict[str, Any] | None
    note: str | None
    webhook: Webhook | None
    labels: NotRequired[dict[str, str]]  # a v2 job's
    mine: bool


# environments

EndpointKind = Literal["local", "sagemaker"]


class Autoscaling(TypedDict):
    min: int
    max: int


class EndpointConfig(TypedDict):
    """What an environment's endpoint runs on (core/endpoint_config.py validates a request's)."""

    kind: EndpointKind
    instance_type: NotRequired[str]  # the sagemaker fields
    instance_types: NotRequired[list[str]]  # capacity fallback: 2 to 5 types, instance_type first (InstancePools)
    initial_count: NotRequired[int]
    mode: NotRequired[Literal["async", "realtime"]]
    autoscaling: NotRequired[Autoscaling | None]
    idle_stop_minutes: NotRequired[int]  # 0: never; absent: the kind's default (core/idle_stop.py)
    shared: NotRequired[bool]  # local: the team's (core/shared_registry.py); absent: this ComfyUI's own


class Archive(TypedDict):
    sha256: str
    size: NotRequired[int]


class PackEntry(TypedDict):
    """A custom node pack, packed by content."""

    folder: str
    archive: Archive
    identity: NotRequired[dict[str, Any]]  # registry id and version, git URL and commit, or content
    dirty: NotRequired[bool]
    digest: NotRequired[str]
    node_types: NotRequired[list[str]]


class ModelEntry(TypedDict):
    folder: str
    name: str
    sha256: str
    size: NotRequired[int]


class PackageEntry(TypedDict):
    name: str
    version: str
    platform_specific: NotRequired[bool]


class WarmupPrompt(TypedDict):
    """The prompt a worker runs on each of its ComfyUIs before it reports ready (core/warmup.py, worker/warmup.py)."""

    prompt: dict[str, Any]  # API format, lowered: ComfyUI's core nodes and the environment's packs only
    template: NotRequired[str | None]  # the template it was made from (its parameters' defaults)
    inputs: NotRequired[dict[str, str]]  # input file name -> sha256 of its blob


class ManifestContent(TypedDict):
    """What a worker makes of an environment (worker/materialise.py reads only this)."""

    custom_nodes: list[PackEntry]
    models: list[ModelEntry]
    python_packages: NotRequired[list[PackageEntry]]
    warmup: NotRequired[WarmupPrompt | None]  # None or absent: no warm-up (an environment published before it)


class Manifest(ManifestContent):
    """An environment's version: written once by its publish, last (core/publish.py, core/environments.py)."""

    name: str
    version: int
    comfyui_version: NotRequired[str | None]
    python: NotRequired[str]
    platform: NotRequired[dict[str, str]]
    torch: NotRequired[str | None]
    core_node_types: NotRequired[list[str]]
    templates: NotRequired[list[str]]
    include: NotRequired[str]
    endpoint: NotRequired[EndpointConfig | None]  # None: published without one (the embedded default)
    size: NotRequired[int]
    notes: NotRequired[list[str]]
    created_at: NotRequired[str]
    published_by: NotRequired[OwnerJson | None]  # the ComfyUI that published it (absent in older versions)


# proofs (core/proofs.py)


class ProofFile(TypedDict):
    """One output file a proof expects: its format and size, and optionally its look (a 64-bit difference hash,
    16 hex digits, matched within the proof's tolerance). A file that is no image has only its format."""

    format: str  # Pillow's ("PNG", "JPEG"), or the file's extension for what is no image
    width: NotRequired[int]
    height: NotRequired[int]
    hash: NotRequired[str | None]


class ProofNode(TypedDict):
    """What one output node of the template must give: its kind of output (ComfyUI's ui key, "images") and its
    files, in order (their count is the node's count)."""

    kind: str
    files: list[ProofFile]


class Proof(TypedDict):
    """A template's proof: its parameters' example values and the outputs they must give, recorded from one
    of its successful runs by a designer ("Use this run as the proof")."""

    execution: str  # the run it was recorded from
    template_version: int | None
    environment_version: int | None  # the version that run ran on
    values: dict[str, Any]  # parameter name -> value
    inputs: dict[str, str]  # input file name -> sha256 of its blob (image parameters' files)
    outputs: dict[str, ProofNode]  # output node id -> what it must give
    hash_tolerance: int | None  # bits of the difference hash that may differ; None: the look is not compared
    recorded_at: str
    recorded_by: NotRequired[str | None]


class ProofResult(TypedDict):
    """One template's proof on one version: passed, or why not (a node's error as ComfyUI said it, or what
    differs from the proof)."""

    template: str
    passed: bool
    problems: list[str]
    node_id: NotRequired[str | None]
    node_type: NotRequired[str | None]


class ProofRun(TypedDict):
    """The proofs of every template bound to an environment, run on a new version before traffic moves to it."""

    environment: str
    version: int
    passed: bool  # every proof passed (true with none to run)
    results: list[ProofResult]
    finished_at: str


# endpoints


class InstancePoolView(TypedDict):
    """One type of an endpoint's capacity fallback (aws/instance_pools.py), as DescribeEndpoint counts it."""

    instance_type: str
    priority: int | None  # its place in the config's instance_types (1: preferred); None: not in the config
    instances: int


class EndpointView(TypedDict):
    """An endpoint as the sidebar, the routes and `sagemaker.endpoint` events show it (core/endpoints.py).
    A change event may carry only the first fields (name, kind, state: Deleting, Deleted)."""

    name: str  # its environment's name
    kind: EndpointKind
    state: str  # SageMaker's EndpointStatus, or Stopped, Deleted (core/endpoints.py)
    environment: NotRequired[str]
    version: NotRequired[int | None]
    reason: NotRequired[str | None]
    created_at: NotRequired[str | None]
    updated_at: NotRequired[str | None]
    # The newest worker's cold start as it reported it (worker/coldstart.py): phases, what it does now, its ComfyUIs.
    phases: NotRequired[list[dict[str, Any]]]
    activity: NotRequired[str | None]
    comfyuis: NotRequired[list[dict[str, Any]]]
    url: NotRequired[str | None]  # local: its worker
    endpoint_name: NotRequired[str]  # sagemaker: the resources and how the endpoint is now
    endpoint_config: NotRequired[str | None]
    instances: NotRequired[int]
    instance_type: NotRequired[str | None]  # with instance pools: the type most of its instances run on
    instance_pools: NotRequired[list[InstancePoolView] | None]  # capacity fallback: instances per type, in order
    warning: NotRequired[str | None]
    stopped_at: NotRequired[str | None]
    stopped_by: NotRequired[str | None]  # "idle": the idle stop (core/idle_stop.py), not a person
    idle_stop_minutes: NotRequired[int]  # 0: never
    worker: NotRequired[dict[str, Any] | None]
    shared: NotRequired[bool]  # local: the team's (core/shared_registry.py)
    owner: NotRequired[str]  # shared: the display name of the ComfyUI that runs it
    proofs: NotRequired[ProofRun | None]  # the proof run of the version it serves (None: not proven)
    proof_failed: NotRequired[ProofRun | None]  # the proof run that stopped the last switch (until the next one)

