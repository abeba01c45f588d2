"""The layers of DESIGN.md's diagram, as import contracts read from the source (the AST, so an import inside a
function counts as much as one at the top): arrows point down, and what runs in another process (the worker,
install.py) or belongs to the host (ComfyUI's modules) is imported only where the diagram says."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest
from harness.sources import parsed

ROOT = Path(__file__).resolve().parents[2]

# ComfyUI's own top-level modules and packages (a ComfyUI checkout's root): importable only inside ComfyUI.
COMFYUI = {"folder_paths", "comfy", "comfy_api", "comfy_api_nodes", "comfy_config", "comfy_execution",
           "comfy_extras", "comfyui_version", "execution", "server", "nodes", "node_helpers", "latent_preview",
           "protocol", "main", "cuda_malloc", "app", "api_server", "middleware", "utils", "new_updater",
           "alembic_db", "hook_breaker_ac10a0"}
AWS_SDK = {"boto3", "botocore"}
# The extension's own modules that touch ComfyUI (host adapters); everything else gets its facts as data.
HOST_ADAPTERS = {"comfy_facts", "comfy_queue", "comfy_interrupt"}
# The command line: cli.py reads it, its commands are grouped by subject in modules of their own.
CLI = {"cli", "cli_aws", "cli_costs", "cli_environments", "cli_worker"}
COMFYUI_FACES = {"nodes"} | HOST_ADAPTERS  # __init__.py only looks ComfyUI's `server` up in sys.modules


class Import:
    def __init__(self, source: str, line: int, unit: str | None, external: str | None, text: str,
                 target: tuple[str, ...] = ()):
        self.source, self.line, self.unit, self.external, self.text = source, line, unit, external, text
        self.target = target  # what a relative import names, as package parts: ("core", "v2", "assets")

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.text}"


@functools.cache
def imports() -> list[Import]:
    out: list[Import] = []
    for source, tree in parsed():
        package = source.split("/")[:-1]  # what a relative import is relative to: [] at the root, ["core"] in core/
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    if top == "comfyui_sagemaker":
                        out.append(Import(source, node.lineno, "<absolute>", None, f"import {alias.name}"))
                    else:
                        out.append(Import(source, node.lineno, None, top, f"import {alias.name}"))
            elif isinstance(node, ast.ImportFrom):
                names = ", ".join(a.name for a in node.names)
                text = f"from {'.' * node.level}{node.module or ''} import {names}"
                if node.level == 0:
                    top = (node.module or "").split(".")[0]
                    if top == "comfyui_sagemaker":
                        out.append(Import(source, node.lineno, "<absolute>", None, text))
                    else:
                        out.append(Import(source, node.lineno, None, top, text))
                    continue
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                target = base + (node.module.split(".") if node.module else [])
                if target:
                    for alias in node.names:  # `from . import fetch` names the module core/net/fetch
                        out.append(Import(source, node.lineno, target[0], None, text, tuple(target + [alias.name])))
                else:  # `from .. import services, stores`: each name is a top-level module
                    for alias in node.names:
                        out.append(Import(source, node.lineno, alias.name, None, text, (alias.name,)))
    return out




def unit(source: str) -> str:
    first = source.split("/")[0]
    return first[:-3] if first.endswith(".py") else first


def of(*units: str) -> list[Import]:
    return [i for i in imports() if unit(i.source) in units]


def ours(found: list[Import], allowed: set[str]) -> list[str]:
    """The imports of the extension's own modules outside `allowed` (a module may always import its own unit)."""
    return [str(i) for i in found if i.unit is not None and i.unit not in allowed and i.unit != unit(i.source)]


def external(found: list[Import], banned: set[str]) -> list[str]:
    return [str(i) for i in found if i.external in banned]


def test_the_source_is_read():
    assert len({i.source for i in imports()}) > 50 and of("core") and of("worker") and of("server_routes")


def test_imports_inside_the_extension_are_relative():
    # ComfyUI loads the extension by folder path, under whatever name its folder has.
    assert [str(i) for i in imports() if i.unit == "<absolute>" and i.source != "__main__.py"] == []


def test_core_imports_nothing_above_it_and_no_host_or_sdk():
    assert ours(of("core"), set()) == []
    assert external(of("core"), {"aiohttp"} | AWS_SDK | COMFYUI) == []


def test_local_and_aws_import_core_only_never_each_other_nor_the_worker():
    assert ours(of("local"), {"core"}) == []
    assert ours(of("aws"), {"core"}) == []
    assert external(of("local", "aws"), COMFYUI) == []


def test_the_worker_is_a_program_of_its_own_on_core_and_the_stores():
    # It runs in an endpoint: never the extension's composition root, routes or ComfyUI face.
    # One exception: a SageMaker worker's idle stop runs the extension's own Stop (aws/), imported lazily there only.
    assert ours([i for i in of("worker") if i.source != "worker/idle_stop.py"], {"core", "stores"}) == []
    assert ours([i for i in of("worker") if i.source == "worker/idle_stop.py"], {"core", "aws"}) == []
    assert external(of("worker"), COMFYUI) == []


def test_only_the_entry_points_import_the_worker():
    assert [str(i) for i in imports() if i.unit == "worker" and unit(i.source) not in {"worker"} | CLI] == []


def test_nothing_below_the_routes_imports_them():
    above = {"server_routes", "gateway", "__init__"} | CLI
    assert [str(i) for i in imports() if i.unit == "server_routes" and unit(i.source) not in above] == []


def test_the_host_adapters_do_not_depend_on_the_routes():
    # They hand ComfyUI's facts and surfaces to the routes (through __init__.py), as core/ types.
    assert ours(of(*HOST_ADAPTERS), {"core"} | HOST_ADAPTERS) == []


def test_the_composition_root_builds_on_core_and_the_adapters():
    assert ours(of("services", "stores"), {"core", "local", "aws", "stores"}) == []


def test_the_comfyui_nodes_use_core_and_aws_only():
    assert ours(of("nodes"), {"core", "aws"}) == []


def test_install_py_stands_alone_and_nothing_imports_it():
    # ComfyUI-Manager runs it as a script before the requirements exist: it loads core/requirements.py by path,
    # which therefore imports nothing of ours.
    assert [str(i) for i in of("install") if i.unit is not None
            and not i.text.startswith("from .core.requirements import ")] == []
    assert [str(i) for i in imports() if i.source == "core/requirements.py" and i.unit is not None] == []
    assert [str(i) for i in imports() if i.unit == "install"] == []


def test_only_the_comfyui_face_imports_comfyui():
    assert [str(i) for i in imports() if i.external in COMFYUI and unit(i.source) not in COMFYUI_FACES] == []


@pytest.mark.parametrize("sdk", sorted(AWS_SDK))
def test_the_aws_sdk_stays_in_aws_the_worker_and_the_s3_nodes(sdk):
    allowed = {"aws", "worker", "nodes"} | CLI
    assert [str(i) for i in imports() if i.external == sdk and unit(i.source) not in allowed] == []


# core/'s sub-packages (docs/architecture.md, Layout): the v2 protocol above the domain, I/O helpers below it.
CORE_PACKAGES = ("v2", "net", "fs")


def core_package(parts: tuple[str, ...] | list[str]) -> str | None:
    """"v2" for core/v2/..., "" for a module of core/ itself, None outside core/."""
    if not parts or parts[0] != "core":
        return None
    return parts[1] if len(parts) > 2 and parts[1] in CORE_PACKAGES else ""


def test_core_is_in_the_sub_packages_the_layout_names():
    found = {p.name for p in (ROOT / "core").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert found == set(CORE_PACKAGES)


@pytest.mark.parametrize("package", ["net", "fs"])
def test_the_io_helpers_import_nothing_of_core_but_its_errors(package):
    # They know files and sockets, not templates or executions: anything of ours may use them.
    assert [str(i) for i in of("core") if core_package(i.source.split("/")) == package and i.unit == "core"
            and core_package(i.target) != package and i.target[:2] != ("core", "errors")] == []


def test_the_domain_does_not_import_the_v2_protocol():
    # The Comfy API v2 is one face of the executions: the domain never depends on it, except the template
    # executions, whose inputs may be v2 asset references (core/v2/assets.py).
    assert [str(i) for i in of("core") if core_package(i.source.split("/")) != "v2" and core_package(i.target) == "v2"
            and i.source != "core/template_executions.py"] == []


def test_the_io_helpers_import_neither_each_other_nor_v2():
    assert [str(i) for i in of("core") if core_package(i.source.split("/")) in ("net", "fs")
            and core_package(i.target) not in (None, "", core_package(i.source.split("/")))] == []
