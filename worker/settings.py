"""The worker's settings, from its environment (the same for a local endpoint and a SageMaker container)."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class WorkerSettings:
    manifest_uri: str  # file:///store/environments/<env>/versions/v000001.json or s3://bucket/prefix/environments/...
    port: int = 8080
    host: str = "0.0.0.0"
    cache_dir: Path = Path("/opt/ml/cache")
    base_dir: Path = Path("/opt/ml/comfyui")
    # Where the caches may go besides cache_dir (worker/volumes.py: the largest wins), ":"-separated;
    # "" is /tmp, where SageMaker mounts the instance's storage. Naming only cache_dir keeps it there.
    local_volumes: str = ""
    comfyui_dir: Path = Path("/opt/ComfyUI")
    comfyui_args: list[str] = field(default_factory=list)
    models: str = "eager"  # eager | lazy
    install_packages: bool = True
    invocation_timeout: float = 3600.0
    # Count invocation_timeout from the request's arrival, queue wait included: SageMaker abandons a
    # real-time call 60 s after sending it, so a prompt still queued then must never run (set for real-time).
    deadline_from_arrival: bool = False
    max_body_bytes: int = 6 * 1024 * 1024
    extension_dir: Path | None = None  # linked into the worker's custom_nodes (the worker has it built in)
    # A local endpoint's secret: /invocations and /status need it in X-Worker-Token. None on SageMaker,
    # whose own front door is the only way in.
    token: str | None = None
    # After a failed start, keep answering /status and /ping (503) this long, then exit: SageMaker then
    # marks the deploy Failed at once instead of waiting for its startup health check to expire.
    exit_after_failure: float = 60.0
    cancel_poll: float = 2.0  # how often an execution looks for its cancel marker in the store
    cancel_hold: float = 300.0  # how long a cancel that came before its execution is kept (worker/cancels.py)
    # A cancelled run whose ComfyUI has not stopped it this many seconds after the first interrupt (a node that
    # never checks for interruption) gets its ComfyUI restarted: the GPU is freed, the run ends cancelled.
    cancel_grace: float = 10.0
    # Sampler previews (ComfyUI's --preview-method): auto is latent2rgb unless TAESD decoders are installed;
    # none sends none. The page that queued a run shows them as for a local run.
    preview_method: str = "auto"
    # How many ComfyUIs and on which devices (worker/devices.py): by default one per visible GPU, one on a
    # machine without. WORKER_COMFYUI_COUNT=N and WORKER_DEVICES="0,1" / "cpu,cpu,cpu" override it.
    comfyui_count: str = ""
    devices: str = ""
    restart_backoff: float = 1.0  # a ComfyUI that died starts again after 1, 2, 4, ... s
    # Blobs from S3: ranged GETs of this size, this many in parallel (None: 4 per vCPU, 8 to 64).
    fetch_part_bytes: int = 16 * 1024 * 1024
    fetch_concurrency: int | None = None
    # Write the cold start report to the store (workers/<environment>/...): SageMaker endpoints, whose
    # containers the extension cannot reach, set it; local endpoints read /status instead.
    report_to_store: bool = False
    # The warm-up prompt's time limit on each ComfyUI (worker/warmup.py): past it the prompt is interrupted and
    # the ComfyUI serves unwarmed. SageMaker's start-up health check (3600 s here) covers it and materialising.
    warmup_timeout: float = 600.0
    # Each ended run's result is kept this many runs, for this long, for a caller that went away (worker/results.py):
    # local endpoints (their ComfyUI restarted with runs in flight). 0 on SageMaker, whose front door cannot reach
    # the instance that ran a run; a prompt whose caller left while it was queued is then not started at all.
    keep_results: int = 0
    keep_minutes: float = 60.0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> WorkerSettings:
        env = os.environ if environ is None else environ
        uri = env.get("SAGEMAKER_MANIFEST_URI", "")
        if not uri:
            raise SystemExit("SAGEMAKER_MANIFEST_URI is not set: the worker serves one environment's manifest")
        return cls(
            manifest_uri=uri,
            port=int(env.get("SAGEMAKER_BIND_TO_PORT", "8080")),
            host=env.get("WORKER_HOST", "0.0.0.0"),
            cache_dir=Path(env.get("WORKER_CACHE_DIR", "/opt/ml/cache")),
            base_dir=Path(env.get("WORKER_BASE_DIR", "/opt/ml/comfyui")),
            local_volumes=env.get("WORKER_LOCAL_VOLUMES", ""),
            comfyui_dir=Path(env.get("COMFYUI_DIR", "/opt/ComfyUI")),
            comfyui_args=shlex.split(env.get("WORKER_COMFYUI_ARGS", "")),
            models=env.get("WORKER_MODELS", "eager"),
            install_packages=env.get("WORKER_INSTALL_PACKAGES", "1") == "1",
            invocation_timeout=float(env.get("WORKER_INVOCATION_TIMEOUT", "3600")),
            deadline_from_arrival=env.get("WORKER_DEADLINE_FROM_ARRIVAL", "") == "1",
            max_body_bytes=int(env.get("WORKER_MAX_BODY_BYTES", str(6 * 1024 * 1024))),
            extension_dir=Path(env["WORKER_EXTENSION_DIR"]) if env.get("WORKER_EXTENSION_DIR") else
            Path(__file__).resolve().parent.parent,
            token=env.get("WORKER_TOKEN") or None,
            exit_after_failure=float(env.get("WORKER_EXIT_AFTER_FAILURE", "60")),
            cancel_poll=float(env.get("WORKER_CANCEL_POLL", "2")),
            cancel_hold=float(env.get("WORKER_CANCEL_HOLD", "300")),
            cancel_grace=float(env.get("WORKER_CANCEL_GRACE_S", "10")),
            preview_method=env.get("WORKER_PREVIEW_METHOD", "auto"),
            comfyui_count=env.get("WORKER_COMFYUI_COUNT", ""),
            devices=env.get("WORKER_DEVICES", ""),
            restart_backoff=float(env.get("WORKER_RESTART_BACKOFF", "1")),
            fetch_part_bytes=int(float(env.get("WORKER_FETCH_PART_MB", "16")) * 1024 * 1024),
            fetch_concurrency=int(env["WORKER_FETCH_CONCURRENCY"]) if env.get("WORKER_FETCH_CONCURRENCY") else None,
            report_to_store=env.get("WORKER_REPORT", "") == "store",
            warmup_timeout=float(env.get("WORKER_WARMUP_TIMEOUT", "600")),
            keep_results=int(env.get("WORKER_KEEP_RESULTS", "0")),
            keep_minutes=float(env.get("WORKER_KEEP_MINUTES", "60")),
        )

    def device_environ(self) -> dict[str, str]:
        """What worker/devices.py plans from: this process's environment with the worker's own choices."""
        return {**os.environ, "WORKER_COMFYUI_COUNT": self.comfyui_count, "WORKER_DEVICES": self.devices}
