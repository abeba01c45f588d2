"""The extension's own Python sources, read once per test process for the tests that read the code itself
(import contracts, probing, relative imports). The walk never enters the dev environment, the tests, the
tools or a hidden folder: their hundreds of thousands of files are not the extension's."""

from __future__ import annotations

import ast
import functools
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = {"tests", "bench", "tools", "web", "dev", ".dev", "node_modules"}


@functools.cache
def source_files() -> tuple[tuple[str, Path], ...]:
    """(path relative to the checkout, posix; absolute path) of every .py file of the extension, sorted."""
    found = []
    for folder, dirs, files in os.walk(ROOT):
        here = Path(folder)
        top = here == ROOT
        dirs[:] = [d for d in dirs if not d.startswith(".") and not (top and d in SKIP) and d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                path = here / name
                found.append((path.relative_to(ROOT).as_posix(), path))
    return tuple(sorted(found))


@functools.cache
def parsed() -> tuple[tuple[str, ast.Module], ...]:
    """Each source's syntax tree, by its relative path."""
    return tuple((rel, ast.parse(path.read_text(encoding="utf-8"), rel)) for rel, path in source_files())
