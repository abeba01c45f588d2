"""The Comfy API v2 in-process (harness.fake_comfy) on FakeEndpoints, for the modules that drive it with Comfy's SDK
(tests/unit/test_jobs_v2.py, test_v2_complete.py, test_job_events.py): a designer's ComfyUI serving its routes, an
input image, an environment deployed, the SDK's client on it, and the helpers those tests share. A rig is a context
manager (closed also when its test fails)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from comfyui_sagemaker.local.folder_store import FolderStore

from .fake_comfy import FakeComfy, publish
from .fake_endpoints import FakeEndpoints
from .images import png
from .prompts import scale_prompt


class V2Rig:
    """`env` deployed on FakeEndpoints with `templates` published in it; `bind(comfy)` binds them before the
    deploy (a template's workflow is its business)."""

    def __init__(self, tmp_path: Path, env: str, config: dict | None = None, templates: tuple[str, ...] = (),
                 bind=None):
        self.env = env
        self.store = FolderStore(tmp_path / "store")
        self.fake = FakeEndpoints(self.store)
        self.comfy = FakeComfy(tmp_path / "designer", self.store, self.fake, **({"config": config} if config else {}))
        (self.comfy.base / "input" / "v2-seed.png").write_bytes(png(4, 4, (200, 100, 50)))
        manifest = publish(self.store, env, templates)
        if bind is not None:
            bind(self.comfy)
        self.fake.deploy(manifest)
        self.fake.wait_state(env)
        self.base = f"{self.comfy.serve().url}/sagemaker/v2/{env}"
        self.jobs = f"{self.base}/api/v2/jobs"
        self.assets = f"{self.base}/api/v2/assets"

    def close(self) -> None:
        self.comfy.close()
        self.fake.close()

    def __enter__(self) -> V2Rig:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sdk_on(base: str, monkeypatch) -> Iterator:
    """Comfy's SDK client on `base` (as an app configures it: COMFY_BASE_URL, no API key)."""
    from comfy_sdk import Comfy

    monkeypatch.setenv("COMFY_BASE_URL", base)
    monkeypatch.delenv("COMFY_API_KEY", raising=False)
    with Comfy(timeout=120) as client:
        yield client


def held(prefix: str = "held") -> dict:
    """Held open by SMTestWait until the test releases it (its signal file never exists)."""
    return scale_prompt("v2-seed.png", prefix=prefix, wait_for="/nonexistent/never", timeout=600)


def error(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text
    return r.json()["error"]
