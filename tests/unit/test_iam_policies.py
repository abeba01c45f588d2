"""The IAM policy documents allow exactly what the AWS operations the code calls need.

The operations are read from the code itself (every boto3 client operation named in
aws/, nodes/ and, through the store, worker/), mapped to IAM actions by the explicit
table in aws/iam_actions.py (an operation missing from it fails: IAM action names do
not follow operation names), and compared with aws/iam/*.json. Every action in the
documents and in the table must exist in the Service Authorization Reference, as
shipped by parliament (requirements-dev.txt).
"""

import ast
import functools
import importlib.metadata
import json
from pathlib import Path

import botocore
import botocore.session
from comfyui_sagemaker.aws import iam_actions as table

ROOT = Path(__file__).resolve().parents[2]
IAM = ROOT / "aws" / "iam"
# boto3's transfer-manager methods (on an S3 client), which are not operations of the service model.
TRANSFER = {"upload_file", "download_file", "upload_fileobj", "download_fileobj"}
# Receiver attribute -> service, for an operation name that several services share (tag_resource, ...).
RECEIVERS = {"s3": "s3", "ecr": "ecr", "sm": "sagemaker", "runtime": "sagemaker-runtime",
             "aas": "application-autoscaling", "cw": "cloudwatch", "logs": "logs"}
# Endpoint logs (aws/endpoint_logs.py): designers and artists read them.
LOG_OPERATIONS = {("logs", "DescribeLogStreams"), ("logs", "FilterLogEvents"), ("logs", "GetLogEvents")}
# The worker never deletes. S3Store.put_blob deletes a blob whose file changed during a multipart upload; on an
# endpoint outputs are complete when stored, and without s3:DeleteObject that clean-up fails as AccessDenied.
WORKER_NEVER = {("s3", "DeleteObject")}
# What an artist reads besides its run path: endpoint state, endpoint logs and endpoint metrics.
ARTIST_READS = {("sagemaker", "DescribeEndpoint"), ("sagemaker", "DescribeEndpointConfig"),
                ("sagemaker", "ListEndpoints"), ("sagemaker", "ListTags"), *LOG_OPERATIONS,
                ("cloudwatch", "GetMetricData")}  # what endpoints cost (GET /sagemaker/costs)
PAGINATE_OR_WAIT = ("get_paginator", "get_waiter")
LOG_READS = {"logs:DescribeLogStreams", "logs:FilterLogEvents", "logs:GetLogEvents"}


# --- what the code calls ---------------------------------------------------------------------------------------

# What an administrator runs (`aws setup|status|teardown|doctor|prices refresh`, the budget, the worker image),
# not a designer's ComfyUI: table.ADMIN. A designer's Doctor button runs aws/doctor.py with the designer's
# credentials: what they may not call is a line of its report (skip or fail, with the fix), not a permission the
# designer policy grants.
ADMIN_CODE = ("setup.py", "stack.py", "doctor.py", "budget.py", "price_list.py", "teardown.py", "worker_image.py")


def extension_code() -> list[Path]:
    return sorted(p for p in [*(ROOT / "aws").glob("*.py"), *(ROOT / "nodes").glob("*.py")]
                  if p.name != "iam_actions.py" and not (p.parent.name == "aws" and p.name in ADMIN_CODE))


def _trees(paths) -> list[ast.AST]:
    return [ast.parse(p.read_text(), str(p)) for p in paths]


@functools.cache
def operation_index() -> dict[str, tuple[tuple[str, str], ...]]:
    """snake_case name -> (service, Operation) for every operation of the services the code makes clients for."""
    services = {s for s, _ in [*table.ACTIONS, *table.ADMIN]}
    for tree in _trees([*extension_code(), *(ROOT / "worker").glob("*.py")]):
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name)) and node.args
                    and (getattr(node.func, "attr", None) or getattr(node.func, "id", "")).endswith("client")
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                services.add(node.args[0].value)
    session = botocore.session.get_session()
    index: dict[str, list[tuple[str, str]]] = {}
    for service in sorted(services):
        for op in session.get_service_model(service).operation_names:
            index.setdefault(botocore.xform_name(op), []).append((service, op))
    for method in TRANSFER:
        index[method] = [("s3", method)]
    return {name: tuple(ops) for name, ops in index.items()}


def _receiver(node: ast.Attribute) -> str:
    value = node.value
    if isinstance(value, ast.Call) and value.args and isinstance(value.args[0], ast.Constant):
        return str(value.args[0].value)  # aws("ecr").list_images(...)
    return value.attr if isinstance(value, ast.Attribute) else getattr(value, "id", "")


def imported_names(tree: ast.AST) -> set[str]:
    """Names a module binds by import (re, json, ...): `re.search` is not SageMaker's Search."""
    return {(a.asname or a.name).split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
            for a in n.names}


def operations_in(node: ast.AST, where: str, modules: set[str] = frozenset()) -> set[tuple[str, str]]:
    """Every boto3 operation named below node: called, passed as a function, or paginated; an attribute of
    an imported module (`modules`) is not a client's."""
    index, out = operation_index(), set()
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in modules:
            continue
        name, receiver = None, ""
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in PAGINATE_OR_WAIT:
            assert n.func.attr == "get_paginator", f"{where}: a waiter's operations are not derived; map them here"
            assert n.args and isinstance(n.args[0], ast.Constant), f"{where}: get_paginator with a computed name"
            name, receiver = n.args[0].value, _receiver(n.func)
        elif isinstance(n, ast.Attribute) and n.attr in index:
            name, receiver = n.attr, _receiver(n)
        if name is None:
            continue
        assert name in index, f"{where}: {name} is not an operation of the services the code makes clients for"
        candidates = index[name]
        if len(candidates) > 1:
            candidates = tuple(c for c in candidates if c[0] == RECEIVERS.get(receiver))
            assert len(candidates) == 1, (f"{where}: {name} is an operation of several services; add its receiver "
                                          f"{receiver!r} to RECEIVERS in this test")
        out.add(candidates[0])
    return out


def called(paths) -> set[tuple[str, str]]:
    trees = [(p.name, ast.parse(p.read_text())) for p in paths]
    return {op for name, tree in trees for op in operations_in(tree, name, imported_names(tree))}


@functools.cache
def store_methods() -> dict[str, frozenset[tuple[str, str]]]:
    """S3Store method -> the operations it calls, through the other methods it calls."""
    tree = ast.parse((ROOT / "aws" / "s3_store.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "S3Store")
    methods = {f.name: f for f in cls.body if isinstance(f, ast.FunctionDef)}
    direct = {name: operations_in(f, f"S3Store.{name}", imported_names(tree)) for name, f in methods.items()}
    uses = {name: {n.attr for n in ast.walk(f) if isinstance(n, ast.Attribute) and n.attr in methods
                   and isinstance(n.value, ast.Name) and n.value.id == "self"} for name, f in methods.items()}
    out = {}
    for name in methods:
        seen, todo = set(), [name]
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(uses[m])
        out[name] = frozenset(op for m in seen for op in direct[m])
    return out


def worker_operations() -> set[tuple[str, str]]:
    """What the worker calls through the store (store.get, store.put_blob, ...) plus the nodes it runs."""
    methods, ops = store_methods(), set()
    for path in sorted((ROOT / "worker").glob("*.py")):
        tree = ast.parse(path.read_text())
        ops |= operations_in(tree, path.name, imported_names(tree))
        for n in ast.walk(tree):
            if isinstance(n, ast.Attribute) and n.attr in methods and not n.attr.startswith("_") \
                    and ast.unparse(n.value).endswith("store"):
                ops |= methods[n.attr]
    return ops | called(sorted((ROOT / "nodes").glob("*.py"))) | set(table.IDLE_STOP)


def designer_operations() -> set[tuple[str, str]]:
    return called(extension_code())


def artist_operations() -> set[tuple[str, str]]:
    # DeleteObject: an artist's runs leave its in-flight folder (core/execution_records.py); scoped below.
    # notifications.py: the queue an artist's ComfyUI receives its async runs' notices from, scoped to its own.
    run_path = called([ROOT / "aws" / "runtime.py", ROOT / "aws" / "s3_store.py", ROOT / "aws" / "notifications.py",
                       *(ROOT / "nodes").glob("*.py")])
    return run_path | ARTIST_READS


def actions(ops, extra: dict | None = None) -> set[str]:
    missing = sorted(op for op in ops if op not in table.ACTIONS)
    assert not missing, (f"the code calls {missing}, which aws/iam_actions.py does not map: add each to ACTIONS "
                         "with the IAM actions AWS documents for it (Service Authorization Reference)")
    out = {a for op in ops for a in table.ACTIONS[op]}
    for op in ops:
        out |= set((extra or {}).get(op, []))
    return out


def kms_actions(ops) -> set[str]:
    s3_ops = sorted(op for op in ops if op[0] == "s3")
    missing = [op for op in s3_ops if op not in table.KMS_WHEN_SSE_KMS]
    assert not missing, f"add {missing} to KMS_WHEN_SSE_KMS in aws/iam_actions.py ([] if it needs no KMS action)"
    return {a for op in s3_ops for a in table.KMS_WHEN_SSE_KMS[op]}


# --- what the documents allow -----------------------------------------------------------------------------------

def statements(policy: str) -> list[dict]:
    doc = json.loads((IAM / policy).read_text())
    assert doc["Version"] == "2012-10-17"
    # The one Deny: blobs are created, never replaced (tests/unit/test_iam_blobs_write_once.py).
    assert all(s["Effect"] == "Allow" or s.get("Sid") == "BlobsAreWrittenOnce" for s in doc["Statement"])
    return doc["Statement"]


def _list(value) -> list:
    return [value] if isinstance(value, str) else list(value)


def allowed(policy: str) -> set[str]:
    return {a for s in statements(policy) if s.get("Sid") != table.KMS_STATEMENT_SID and s["Effect"] == "Allow"
            for a in _list(s["Action"])}


def kms_statement(policy: str) -> dict:
    found = [s for s in statements(policy) if s.get("Sid") == table.KMS_STATEMENT_SID]
    assert len(found) == 1, f"{policy}: one statement {table.KMS_STATEMENT_SID} grants the store's KMS key"
    return found[0]


@functools.cache
def service_authorization_reference() -> dict[str, dict[str, bool]]:
    """prefix -> action -> whether it supports resource-level permissions (parliament's iam_definition.json)."""
    path = importlib.metadata.distribution("parliament").locate_file("parliament/iam_definition.json")
    out = {}
    for service in json.loads(Path(path).read_text()):
        out.setdefault(service["prefix"], {}).update({
            p["privilege"]: any(r["resource_type"] for r in p["resource_types"]) for p in service["privileges"]})
    return out


POLICIES = ("designer-policy.json", "artist-policy.json", "execution-role-policy.json", "gateway-policy.json")


# --- tests -----------------------------------------------------------------------------------------------------

def test_every_operation_the_code_calls_is_in_the_table():
    ops = designer_operations() | worker_operations()
    assert ops >= {("s3", "HeadObject"), ("sagemaker-runtime", "InvokeEndpointWithResponseStream"),
                   ("application-autoscaling", "RegisterScalableTarget")}, "the code walk found too little"
    actions(ops)
    kms_actions(ops)
    assert ARTIST_READS <= designer_operations()


def test_what_the_admin_cli_calls_is_in_its_table():
    ops = called([ROOT / "aws" / name for name in ADMIN_CODE])
    assert ops >= {("cloudformation", "CreateStack"), ("codebuild", "StartBuild")}, "the code walk found too little"
    missing = sorted(ops - set(table.ADMIN))
    assert not missing, f"aws/setup.py calls {missing}: add each to ADMIN in aws/iam_actions.py"
    assert not set(table.ADMIN) - ops, "ADMIN lists operations the admin code no longer calls"


def test_every_action_exists_in_the_service_authorization_reference():
    known = service_authorization_reference()
    assert "InvokeEndpointWithResponseStream" in known["sagemaker"], "parliament's list is too old"
    granted = {a for p in POLICIES for s in statements(p) for a in _list(s["Action"])}
    listed = {a for group in (table.ACTIONS, table.KMS_WHEN_SSE_KMS, table.EXECUTION_ROLE, table.ADMIN)
              for values in group.values() for a in values}
    unknown = sorted(a for a in granted | listed | set(table.SCOPED)
                     if a.split(":", 1)[1] not in known.get(a.split(":", 1)[0], {}))
    assert not unknown, f"not IAM actions (Service Authorization Reference): {unknown}"


def test_actions_without_resource_level_permissions_are_granted_on_every_resource():
    known = service_authorization_reference()
    for policy in POLICIES:
        for s in statements(policy):
            for a in _list(s["Action"]):
                prefix, name = a.split(":", 1)
                if not known[prefix][name]:
                    assert s["Resource"] == "*", f"{policy} {s.get('Sid')}: {a} takes no resource ARN; use '*'"


def test_scoped_actions_are_granted_only_on_their_resource_and_condition():
    for policy in POLICIES:
        for s in statements(policy):
            for a in set(_list(s["Action"])) & set(table.SCOPED):
                assert _list(s["Action"]) == [a], f"{policy}: {a} has a statement of its own"
                assert s["Resource"] == table.SCOPED[a]["Resource"], f"{policy}: {a} resource"
                assert s["Condition"] == table.SCOPED[a]["Condition"], f"{policy}: {a} condition"


def test_the_designer_policy_is_exactly_what_the_code_calls():
    ops = designer_operations()
    assert allowed("designer-policy.json") == actions(ops)
    kms = kms_statement("designer-policy.json")
    assert set(_list(kms["Action"])) == kms_actions(ops)


def test_the_artist_policy_is_invoke_and_read_plus_its_own_uploads():
    ops = artist_operations()
    # Its async results queue is granted by a second policy (IAM's size quota: aws/stack.py).
    artist = allowed("artist-policy.json") | allowed("artist-notices-policy.json")
    assert artist == actions(ops)
    assert set(_list(kms_statement("artist-policy.json")["Action"])) == kms_actions(ops)
    # Metrics are read (what endpoints cost), alarms never touched.
    assert not any(a.startswith(("sagemaker:Create", "sagemaker:Delete", "sagemaker:Update", "application-",
                                 "iam:")) for a in artist)
    assert {a for a in artist if a.startswith("cloudwatch:")} <= {"cloudwatch:GetMetricData"}
    assert artist <= allowed("designer-policy.json")


# A create only, never over someone else's key: the request carries If-None-Match (S3 User Guide, "Enforce
# conditional writes on Amazon S3 buckets", example 1).
WRITE_ONCE = {"Null": {"s3:if-none-match": "false"}}


def test_an_artists_writes_reach_only_its_own_runs():
    """Content-addressed blobs and the executions change marker are shared, v2 asset records only created
    (their key names no owner); every other key an artist may write or delete names its own instance
    (execution ids and idempotency scopes carry it: core/execution_records.py, core/v2/idempotency.py)."""
    shared = {"arn:aws:s3:::STORE_BUCKET/STORE_PREFIX/blobs/*",
              "arn:aws:s3:::STORE_BUCKET/STORE_PREFIX/changes/executions.json"}
    writes = [s for s in statements("artist-policy.json")
              if {"s3:PutObject", "s3:DeleteObject"} & set(_list(s["Action"])) and s.get("Condition") != WRITE_ONCE]
    resources = {r for s in writes for r in _list(s["Resource"])}
    assert resources - shared and all("ARTIST_INSTANCE_ID" in r for r in resources - shared), resources
    deletes = {r for s in writes if "s3:DeleteObject" in _list(s["Action"]) for r in _list(s["Resource"])}
    assert "arn:aws:s3:::STORE_BUCKET/STORE_PREFIX/executions/inflight/ARTIST_INSTANCE_ID*" in deletes
    assert all(r.startswith(("arn:aws:s3:::STORE_BUCKET/STORE_PREFIX/executions/inflight/",
                             "arn:aws:s3:::STORE_BUCKET/STORE_PREFIX/idempotency/")) for r in deletes), deletes
    once = [s for s in statements("artist-policy.json") if s.get("Condition") == WRITE_ONCE]
    assert all(_list(s["Action"]) == ["s3:PutObject"] for s in once), once


def test_the_execution_role_covers_the_worker_and_what_sagemaker_does_with_it():
    worker = worker_operations() - WORKER_NEVER
    role = allowed("execution-role-policy.json")
    # The worker's own calls, plus what SageMaker does with the role the designer passes to CreateModel.
    hosting = {a for op in designer_operations() & set(table.EXECUTION_ROLE) for a in table.EXECUTION_ROLE[op]}
    assert role == actions(worker) | hosting
    assert "s3:DeleteObject" not in role
    assert set(_list(kms_statement("execution-role-policy.json")["Action"])) == kms_actions(worker)


def test_kms_statements_grant_the_store_key_through_s3_only():
    for policy in POLICIES:
        kms = kms_statement(policy)
        assert kms["Resource"] == table.KMS_KEY_ARN
        assert kms["Condition"] == table.KMS_CONDITION
        assert all(a.startswith("kms:") for a in _list(kms["Action"]))
        assert not any(a.startswith("kms:") for a in allowed(policy)), f"{policy}: kms actions outside the KMS Sid"


def test_endpoint_logs_are_read_only_from_sagemaker_endpoint_log_groups():
    for policy in ("designer-policy.json", "artist-policy.json"):
        readers = [s for s in statements(policy) if LOG_READS & set(_list(s["Action"]))]
        assert readers and all(s["Resource"] == table.ENDPOINT_LOG_GROUPS for s in readers), policy
        assert set().union(*(_list(s["Action"]) for s in readers)) == LOG_READS, policy
