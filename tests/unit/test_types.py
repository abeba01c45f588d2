"""The type checker over the layers below the routes: core/, worker/, aws/ and local/ (pyproject.toml's
[tool.mypy]) finds no error. Records, manifests, endpoint views and the worker's wire are TypedDicts
(core/records.py, core/worker_contract.py), so a misspelt key or a wrong shape fails here, not in a user's run."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("core", "worker", "aws", "local")


def checkout_dir() -> Path:
    """mypy reads the code as the package `comfyui_sagemaker` (its relative imports need the name): a folder
    under .dev/ holds a link of that name to this checkout, beside mypy's cache, so a second run reads only
    what changed. One per checkout (worktrees share .dev/)."""
    work = ROOT / ".dev" / "mypy" / hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    link = work / "packages" / "comfyui_sagemaker"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        try:
            link.symlink_to(ROOT, target_is_directory=True)
        except FileExistsError:  # another run made it meanwhile
            pass
    return work


def test_the_layers_below_the_routes_type_check(monkeypatch):
    work = checkout_dir()
    monkeypatch.setenv("MYPYPATH", str(work / "packages"))
    packages = [arg for unit in CHECKED for arg in ("-p", f"comfyui_sagemaker.{unit}")]
    out, err, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(work / "cache"),
                                "--no-error-summary", "--hide-error-context", *packages])
    assert status == 0 and not err, f"mypy found errors:\n{out}{err}"


def test_no_error_is_silenced_wholesale():
    # A `# type: ignore` names its error code and says why; the configuration ignores no module's errors.
    bare = []
    for unit in CHECKED:
        for path in sorted((ROOT / unit).rglob("*.py")):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if "type: ignore" in line and not re.search(r"# type: ignore\[[a-z-, ]+\]  # \S", line):
                    bare.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert bare == []
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    sections = re.findall(r"^(\[\[?tool\.mypy[^\]]*\]\]?)\n(.*?)(?=^\[|\Z)", pyproject, re.S | re.M)
    assert sections, "pyproject.toml has no [tool.mypy]"
    for header, body in sections:
        keys = set(re.findall(r"^([a-z_]+)\s*=", body, re.M))
        assert not {"ignore_errors", "disable_error_code", "follow_untyped_imports"} & keys, header
        assert "ignore_missing_imports" not in keys or header == "[[tool.mypy.overrides]]", header
