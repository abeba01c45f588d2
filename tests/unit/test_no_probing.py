"""Our own objects are used through what they declare, read from the source (the AST):

- no getattr/hasattr on them: a method a caller needs is declared on its seam (core/endpoints.py's Endpoints,
  core/host.py's Host, core/store.py's Store, core/errors.py's SageMakerError, server_routes/context.py's
  RouteContext), with a no-op default where a kind has none. Probing stays where the object is not ours: the
  ComfyUI face (its server, queue, routes and node classes, whose shape changes between versions), the
  platform (`os` flags), and the few third-party objects listed below;
- nobody reads another object's private state: no `x.__dict__` but one's own, no `x._name` of an object
  (modules aside), so that a configuration change, or anything else, never needs it.
"""

from __future__ import annotations

import ast

from harness.sources import parsed

# The ComfyUI face: everything it probes is ComfyUI's (tests/unit/test_layers.py's host adapters, and the
# package's __init__.py, which looks ComfyUI's PromptServer up).
HOST_FACES = {"__init__.py", "comfy_facts.py", "comfy_queue.py", "comfy_interrupt.py"}
PLATFORM = {"os"}  # optional functions and flags of the platform
# (file, object, attribute): a getattr/hasattr on something that is not ours.
ALLOWED = {
    # argparse's Namespace holds a sub-command's options only when that sub-command was given; a module run as
    # a folder has __package__ ""
    ("cli_aws.py", "args", "region"),
    ("cli.py", "args", "func"),
    ("cli.py", "args", "aws_command"),
    ("cli.py", "main_module", "__package__"),
    # aiohttp's match info has a resource only for a route that matched
    ("server_routes/http.py", "request.match_info.route", "resource"),
    # the deadline socket hands every other attribute to the socket it wraps
    ("core/net/http_deadline.py", "self._sock", "*"),
}




def probes() -> list[tuple[str, int, str, str]]:
    """(file, line, object, attribute) of every getattr/hasattr; "*" for an attribute named at run time."""
    found = []
    for source, tree in parsed():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2:
                name = node.args[1]
                attribute = name.value if isinstance(name, ast.Constant) and isinstance(name.value, str) else "*"
                found.append((source, node.lineno, ast.unparse(node.args[0]), attribute))
    return found


def modules(tree: ast.Module) -> set[str]:
    """The names a file binds to imported modules (`import os`, `import hashlib as h`)."""
    return {alias.asname or alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
            for alias in node.names}


def test_the_source_is_read():
    assert len(parsed()) > 50 and any(s == "services.py" for s, _ in parsed())
    assert any(p[0] == "comfy_queue.py" for p in probes())  # the walk sees getattr calls


def test_no_getattr_or_hasattr_on_our_own_objects():
    wrong = [f"{source}:{line}: probes {target} for {attribute!r}" for source, line, target, attribute in probes()
             if source not in HOST_FACES and target.split(".")[0] not in PLATFORM
             and (source, target, attribute) not in ALLOWED]
    assert wrong == [], "declare the method or attribute on its seam instead of probing for it"


def test_the_allowed_probes_still_exist():
    # An entry whose probe is gone is removed too, so the list stays the true one.
    present = {(source, target, attribute) for source, _, target, attribute in probes()}
    assert sorted(ALLOWED - present) == []


def test_nobody_reads_another_objects_private_state():
    wrong = []
    for source, tree in parsed():
        imported = modules(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue  # its own
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                continue
            if node.attr == "__dict__" or not node.attr.startswith("__"):
                if isinstance(owner, ast.Name) and owner.id in imported and node.attr != "__dict__":
                    continue  # a module's (os._exit, hashlib._Hash)
                wrong.append(f"{source}:{node.lineno}: {ast.unparse(node)}")
    assert wrong == [], "use what the object declares (a method or a property of its own)"
