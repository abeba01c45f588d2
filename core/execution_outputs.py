"""An execution's output files: checked against their digests and copied from the store under
ComfyUI's `output/sagemaker/<execution id>/`, where `/view` serves them. The same for a run of this
ComfyUI as it ends and, on demand, for someone else's run opened here (team mode). Without an output
folder (the gateway: `output_dir()` is None) each file is checked and nothing is kept; the store serves it."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from .errors import SageMakerError
from .fs import scratch
from .fs.hashing import file_sha256
from .store import Store, blob_key

OUTPUT_SUBFOLDER = "sagemaker"
DIGEST_RE = re.compile(r"[0-9a-f]{64}")


class OutputInvalid(SageMakerError):
    """The endpoint answered with an output item that cannot be trusted: malformed, or its bytes do not
    match its digest. The run fails with this reason; nothing of it is served."""

    code = "bad_output"


# Temporary names under output/sagemaker/ while a file is copied there (core/fs/scratch.py: swept at start).
OUTPUT_TEMP = ".sagemaker-output-"


class Outputs:
    def __init__(self, store: Store, output_dir: Callable[[], Path | None], temp: scratch.Scratch | None = None):
        self.store = store
        self.output_dir = output_dir
        self.temp = temp  # where a blob is checked when there is no output folder (the gateway)

    def localise(self, execution_id: str, output: dict) -> dict:
        """A node's output files copied under output/; the items point at the copies."""
        out = {}
        for key, items in output.items():
            if not isinstance(items, list):
                out[key] = items
                continue
            out[key] = [self.copy_out(execution_id, i) if isinstance(i, dict) and i.get("sha256") else i
                        for i in items]
        return out

    def all(self, execution_id: str, outputs: object) -> dict:
        """Every node's outputs of a result; OutputInvalid for a shape that is not {node: {kind: [items]}}."""
        if not outputs:
            return {}
        if not isinstance(outputs, dict) or not all(isinstance(ui, dict) for ui in outputs.values()):
            raise OutputInvalid("the endpoint returned outputs that are not {node: {kind: [items]}}")
        return {str(node): self.localise(execution_id, ui) for node, ui in outputs.items()}

    def copy_out(self, execution_id: str, item: dict) -> dict:
        """The item's blob under output/sagemaker/<id>/, given its name only once its bytes match its digest."""
        digest, filename = item.get("sha256"), item.get("filename")
        if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
            raise OutputInvalid(f"the endpoint returned an output with a malformed digest: {str(digest)[:80]!r}")
        if not isinstance(filename, str) or Path(filename).name in ("", ".", "..") or "\x00" in filename:
            raise OutputInvalid(f"the endpoint returned an output with a malformed file name: {str(filename)[:80]!r}")
        subfolder = f"{OUTPUT_SUBFOLDER}/{execution_id}"
        name = Path(filename).name
        folder = self.output_dir()
        if folder is None:
            return {"filename": name, "subfolder": subfolder, "type": "output", "sha256": digest,
                    "size": self._check(digest, name)}
        dest = Path(folder) / subfolder / name
        if not (dest.is_file() and file_sha256(dest) == digest):
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(scratch.temp_name(OUTPUT_TEMP, ".part"))
            try:
                self.store.get_file(blob_key(digest), str(tmp))
                if file_sha256(tmp) != digest:
                    raise OutputInvalid(f"output {name}: the stored bytes do not match their digest {digest}")
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
        return {"filename": name, "subfolder": subfolder, "type": "output", "sha256": digest,
                "size": dest.stat().st_size}

    def _check(self, digest: str, name: str) -> int:
        """The blob's size once its bytes are read and match their digest (nothing kept)."""
        fd, tmp = (self.temp or scratch.system()).file("output")
        os.close(fd)
        try:
            self.store.get_file(blob_key(digest), tmp)
            if file_sha256(tmp) != digest:
                raise OutputInvalid(f"output {name}: the stored bytes do not match their digest {digest}")
            return os.path.getsize(tmp)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def remove_local(self, execution_id: str) -> None:
        import shutil

        folder = self.output_dir()
        if folder is not None:
            shutil.rmtree(Path(folder) / OUTPUT_SUBFOLDER / execution_id, ignore_errors=True)
