"""The checkout's root is the extension's package (its `__init__.py` is what ComfyUI imports), never a package of
tests: pytest collects it as a plain folder, so it never imports that `__init__.py` itself.

pytest 9 imports a package folder's `__init__.py` before the tests below it (for a setup_module). Under
`--import-mode=importlib` it names the module after the folder, and where the folder's name is not a Python name
(a clone named `comfyui-sagemaker`, as the README clones it) it imports the file bare, whose relative imports
then fail: every test errored with "attempted relative import with no known parent package"."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if path.resolve() == ROOT:
        return pytest.Dir.from_parent(parent, path=path)
    return None
