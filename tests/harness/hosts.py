"""A ComfyUI host made of real folders (this process's Python, test packs and models) for the environment
service, and stores that fail on purpose."""

from __future__ import annotations

import hashlib

from comfyui_sagemaker.core import errors, model_files, snapshot
from comfyui_sagemaker.core.environments import EnvironmentService
from comfyui_sagemaker.core.fs.hashing import HashCache
from comfyui_sagemaker.core.tasks import TaskManager
from comfyui_sagemaker.core.templates import TemplateService
from comfyui_sagemaker.local.folder_store import FolderStore


class FolderHost:
    """This process's Python plus model and custom node folders under `root`: real code, test data."""

    def __init__(self, root):
        self.root = root
        (root / "custom_nodes" / "pack_a").mkdir(parents=True)
        (root / "custom_nodes" / "pack_a" / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
        (root / "models" / "loras").mkdir(parents=True)

    def folders(self):
        return {"loras": ([str(self.root / "models" / "loras")], [".safetensors"])}

    def snapshot(self):
        return snapshot.take(snapshot.SnapshotFacts("0.3.75", (str(self.root / "custom_nodes"),), self.folders(),
                                                    "/nonexistent"))

    def model_index(self):
        return model_files.scan(self.folders())

    def node_types_by_pack(self):
        return {"pack_a": ["PackANode"]}

    def analyze(self, workflow):
        raise AssertionError("include=all never analyzes")


class FailingStore(FolderStore):
    """A real folder store that fails once `budget` bytes have gone out (the store failing mid-publish)."""

    def __init__(self, root, budget):
        super().__init__(root)
        self.budget = budget

    def put_blob(self, sha256, path, on_bytes=None):
        def counting(n):
            self.budget -= n
            if self.budget < 0:
                raise errors.StoreUnavailable("store went away")
            if on_bytes:
                on_bytes(n)

        super().put_blob(sha256, path, counting)


def service(store, host, tmp_path):
    templates = TemplateService(store, lambda n: False)
    return EnvironmentService(store, templates, host, TaskManager(), HashCache(tmp_path / "hc.json"), 4)


def publish_and_wait(svc, name="Env1", **kw):
    task = svc.publish(name, include="all", endpoint={"kind": "local"}, **kw)
    return svc.tasks.wait(task.id, 180)


def model(host, name, data):
    path = host.root / "models" / "loras" / name
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()
