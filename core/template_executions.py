"""Running a template by its parameters: the caller's values checked against the template's schema, filled
into its prompt, images put where the execution will find them. One place for the template API
(server_routes/template_executions.py) and the Comfy API v2's `{"template", "inputs"}` jobs.

An image value is a file of ComfyUI's input folder, base64 bytes (optionally a data: URL) or, from a v2
job, an asset reference. Where there is an input folder (the extension) bytes are written there under a
content-derived name (`sagemaker-<sha256[:16]><ext>`: the same bytes, the same name, written once and
never over another file); where there is none (the gateway) they go to the store as a blob and reach
the endpoint from there. Either way the prompt names the file by that name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import parameters
from .fs import scratch
from .inputs import INPUT_TEMPS, input_path
from .store import Store
from .templates import Template, TemplateService
from .v2.assets import AssetService, input_name, is_reference


def image_name(data: bytes) -> str:
    return f"sagemaker-{hashlib.sha256(data).hexdigest()[:16]}{parameters.image_extension(data)}"


def write_image(input_dir: Path, data: bytes) -> str:
    """Put image bytes in the input folder under their content-derived name (written once, exclusively,
    never over another file); return the name."""
    name = image_name(data)
    dest = Path(input_dir) / name
    if dest.exists():
        return name
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f"{INPUT_TEMPS[1]}{scratch.owner_tag()}-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            os.link(tmp, dest)
        except FileExistsError:
            pass  # another request wrote the same content first
    finally:
        os.unlink(tmp)
    return name


def store_image(store: Store, data: bytes, temp: scratch.Scratch | None = None) -> tuple[str, str]:
    """Image bytes as a blob in the store: (their content-derived file name, sha256)."""
    digest = hashlib.sha256(data).hexdigest()
    fd, tmp = (temp or scratch.system()).file("image")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if not store.has_blob(digest, len(data), tmp):
            store.put_blob(digest, tmp)
    finally:
        os.unlink(tmp)
    return image_name(data), digest


def named_outputs(schema: dict, outputs: dict) -> dict:
    """An execution's outputs under the template's output names."""
    marked = schema.get("x-outputs") or {}
    return {out: (outputs.get(spec["node"]) or {}).get("images", []) for out, spec in marked.items()}


class TemplateExecutions:
    """`input_dir()` is ComfyUI's input folder, or None without one (the gateway)."""

    def __init__(self, templates: TemplateService, store: Store, input_dir: Callable[[], Path | None],
                 assets: Callable[[], AssetService] | None = None, temp: scratch.Scratch | None = None):
        self.templates = templates
        self.store = store
        self.input_dir = input_dir
        self.assets = assets
        self.temp = temp  # where an image on its way to the store waits (core/fs/scratch.py)

    def filled(self, name: str, inputs: object, stored: dict[str, str] | None = None) -> tuple[Template, dict]:
        """(the template, its prompt with the values set on its parameter nodes). Images given as bytes are
        written (see above); `stored` collects {file name: sha256} of those put in the store, and of asset
        references (given in `inputs` by a v2 job). InputsInvalid (422) says per parameter what is wrong."""
        template = self.templates.get(name)  # TemplateNotFound -> 404
        stored = {} if stored is None else stored
        if isinstance(inputs, dict) and self.assets is not None:
            inputs = dict(inputs)
            for key, value in inputs.items():
                if is_reference(value):
                    asset = self.assets().resolve(value)  # MissingAsset -> 422
                    inputs[key] = input_name(asset)
                    stored[inputs[key]] = asset.sha256
        folder = self.input_dir()

        def exists(file: str) -> bool:
            return file in stored or (folder is not None and input_path(folder, file) is not None)

        values = parameters.validate_inputs(template.parameters, inputs, exists)
        for key, value in values.items():
            if isinstance(value, bytes):
                if folder is not None:
                    values[key] = write_image(folder, value)
                else:
                    values[key], stored[image_name(value)] = store_image(self.store, value, self.temp)
        return template, parameters.fill(template.prompt, template.parameters, values)

    def prepare(self, name: str, inputs: object, stored: dict[str, str] | None = None) -> tuple[dict, dict]:
        """(the prompt an endpoint runs, the template's schema): filled, then lowered. Blocking."""
        template, prompt = self.filled(name, inputs, stored)
        return parameters.lower(prompt), template.parameters or {}
