"""The command line: the same services as the routes, without ComfyUI running."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .core import config as config_mod
from .core import names
from .core.errors import SageMakerError
from .core.version import __version__

PACKAGE_DIR = Path(__file__).resolve().parent
SERVER_TIMEOUT_S = 300.0  # one call to a running ComfyUI (a snapshot hashes nothing, an analysis is quick)


def default_config_dir() -> Path | None:
    """ComfyUI's `user/__sagemaker` when this copy sits in `<ComfyUI>/custom_nodes/<folder>`
    (a ComfyUI started with --user-directory or --base-directory keeps it elsewhere: pass --config-dir). The
    folder counts as it was called, too: a symlink to a checkout (the dev environment's `.dev/base/custom_nodes/
    comfyui-sagemaker`) sits in that ComfyUI although the checkout does not."""
    called = Path(sys.argv[0]).absolute() if sys.argv and sys.argv[0] else PACKAGE_DIR  # absolute, not resolved
    if called.name == "__main__.py":
        called = called.parent
    for folder in (called, PACKAGE_DIR):
        if folder.parent.name == "custom_nodes":
            candidate = folder.parent.parent / "user" / "__sagemaker"
            if candidate.is_dir():
                return candidate
    return None


def _config(args: argparse.Namespace) -> int:
    from .core.identity import display_name, instance_id

    config_dir = Path(args.config_dir) if args.config_dir else default_config_dir()
    cfg = config_mod.load(config_dir)
    # The instance id names this ComfyUI's runs in the store (an artist's IAM policy scopes writes by it).
    identity = {"instance": instance_id(config_dir), "name": display_name(cfg.display_name)} if config_dir else None
    print(json.dumps({"config_dir": str(config_dir) if config_dir else None, "identity": identity, **cfg.public()},
                     indent=2))
    return 0


def _aws(args: argparse.Namespace):
    from .aws.clients import client
    from .aws.setup import Aws

    region = args.region or _default_region()
    return Aws(region, lambda service: client(service, region))


def _default_region() -> str:
    import boto3

    region = boto3.session.Session().region_name
    if not region:
        raise SageMakerError("no AWS region: pass --region or set AWS_DEFAULT_REGION")
    return region


def _say(message: str) -> None:
    print(message, flush=True)


def _ask(question: str) -> bool:
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _aws_setup(args: argparse.Namespace) -> int:
    from .aws.setup import setup

    parameters = {"StorePrefix": args.prefix}
    for item in args.parameter or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SageMakerError(f"--parameter {item!r}: write it KEY=VALUE")
        parameters[key] = value
    if args.bucket:
        parameters["BucketName"] = args.bucket
    if args.kms_key_arn:
        parameters["KmsKeyArn"] = args.kms_key_arn
    if args.monthly_budget is not None:
        parameters["MonthlyBudget"] = str(args.monthly_budget)
    if args.budget_email:
        parameters["BudgetEmail"] = args.budget_email
    config_dir = Path(args.config_dir) if args.config_dir else default_config_dir()
    # The bucket keeps records as long as this ComfyUI's retention does (core/retention.py).
    parameters.setdefault("RetentionDays", str(config_mod.load(config_dir).execution_retention_days))
    cfg = setup(_aws(args), args.stack, parameters, config_dir, _say, recreate=args.recreate, build=not args.no_build,
                confirm=_ask if sys.stdin.isatty() else None, image_tag=args.image_tag)
    if config_dir is None:
        print("no ComfyUI configuration folder found (pass --config-dir); put this in its config.json:")
        print(json.dumps(cfg, indent=2))
    else:
        print("done: restart ComfyUI, or apply it from the SageMaker tab's Connect panel")
    return 0


def _aws_status(args: argparse.Namespace) -> int:
    from .aws.setup import status

    report = status(_aws(args), args.stack)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"stack {report['stack']}: {report['status']}")
    for key, value in report.get("outputs", {}).items():
        print(f"  {key}: {value}")
    for key in ("account", "image_digest", "drift", "budget"):
        if key in report:
            print(f"  {key.replace('_', ' ')}: {report[key]}")
    return 0


def _aws_teardown(args: argparse.Namespace) -> int:
    from .aws.teardown import teardown

    teardown(_aws(args), args.stack, _say, force=args.force, delete_data=args.delete_data)
    return 0


def _stack_image(out: dict[str, str], config_dir: Path | None) -> str:
    """The image `aws setup` pinned for this stack: the configuration's, when it names the stack's repository
    (the stack names a repository, not an image: each build has its own tag). Older stacks' output too."""
    if out.get("WorkerImageUri"):
        return out["WorkerImageUri"]
    configured = config_mod.load(config_dir).worker_image_uri if config_dir is not None else ""
    repository = out.get("RepositoryUri", "")
    return configured if repository and configured.startswith((f"{repository}@", f"{repository}:")) else repository


def _aws_doctor(args: argparse.Namespace) -> int:
    """The self-check (aws/doctor.py) of the stack's store and image, or else of the configuration's."""
    from .aws.doctor import Target, failed, run
    from .aws.setup import describe, outputs

    aws = _aws(args)
    d = describe(aws, args.stack)
    if d is not None:
        out = outputs(d)
        target = Target(out["StoreBucket"], out["StorePrefix"], aws.region, _stack_image(out, _config_dir(args)),
                        args.instance_type)
    else:
        cfg = config_mod.load(_config_dir(args))
        if cfg.store != "s3" or not cfg.s3_bucket:
            raise SageMakerError(f"no stack {args.stack} in {aws.region} and the configuration's store is not S3: "
                                 "run aws setup, or pass --stack, --region or --config-dir")
        target = Target(cfg.s3_bucket, cfg.s3_prefix, aws.region, cfg.worker_image_uri, args.instance_type)
    lines = run(target, aws, args.assume_role or ())
    for x in lines:
        print(f"{x['status'].upper():4}  {x['name']}: {x['detail']}")
        if x["fix"] and x["status"] != "pass":
            print(f"      fix: {x['fix']}")
    return 1 if failed(lines) else 0


def _aws_prices_refresh(args: argparse.Namespace) -> int:
    """The hosting prices of the shipped table, read again from the Price List API (aws/price_list.py)."""
    from .aws.clients import client
    from .aws.price_list import PRICING_REGION, refresh
    from .core import prices

    regions = set(args.price_region or prices.table().hosting)
    if not args.price_region:  # and the region this ComfyUI runs its endpoints in
        try:
            configured = config_mod.load(_config_dir(args)).region
        except SageMakerError:
            configured = ""
        regions |= {configured} if configured else set()
    out = Path(args.out) if args.out else prices.TABLE_PATH
    refresh(client("pricing", PRICING_REGION), regions, _say, out)
    return 0


def _translated(args: argparse.Namespace) -> int:
    """An `aws` command: AWS's errors in the same words as everywhere else (aws/errors.py)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from .aws.errors import translate

    try:
        return args.func(args)
    except (ClientError, BotoCoreError) as err:
        raise translate(err, getattr(args, "region", None) or "") from None


def _config_dir(args: argparse.Namespace) -> Path | None:
    return Path(args.config_dir) if args.config_dir else default_config_dir()


def _gateway(args: argparse.Namespace) -> int:
    from .gateway.app import serve

    return serve(_config_dir(args), args.host, args.port, args.drain_seconds, args.run_lease_seconds)


def _webhook_secret(args: argparse.Namespace) -> int:
    """This configuration's webhook signing secret (made on first use), for the receivers that verify
    signatures; the store's old, readable one is deleted."""
    from .core.webhook_secret import ENV, LEGACY_KEY, WebhookSecret

    config_dir = _config_dir(args)
    secret = WebhookSecret(config_dir, make=True)
    if config_dir is None and not secret.environ.get(ENV, "").strip():
        raise SageMakerError("no configuration folder: pass --config-dir (the folder of config.json), or set "
                             f"{ENV}")
    print(secret.rotate() if args.rotate else secret.text())
    _forget_legacy_secret(config_dir, LEGACY_KEY)
    return 0


def _forget_legacy_secret(config_dir: Path | None, key: str) -> None:
    """Older versions kept one secret per store, readable by every reader of the store: delete it, and say
    that receivers trusting it must be given the new one."""
    from .stores import make_store

    try:
        cfg = config_mod.load(config_dir)
        if cfg.store == "folder" and not cfg.store_path:
            return  # no store configured here
        store = make_store(cfg)
        if not store.exists(key):
            return
        store.delete(key)
        done = f"deleted {key}"
    except Exception as err:  # no store here, or no right to delete: say so, the secret printed stands
        done = f"could not check or delete {key} in the store ({type(err).__name__}: {err}); delete it yourself"
    print(f"note: {done}, the webhook secret of older versions. Everyone who could read the store could read "
          "it: give receivers the secret above and stop accepting the old one.", file=sys.stderr)


def _worker(argv: list[str]) -> int:
    from .worker.__main__ import main as worker_main

    if argv[:1] == ["serve"] and argv[1:]:
        args = serve_parser().parse_args(argv[1:])
        if args.environment is None:
            raise SageMakerError("--share, --host and the other options serve an environment of the store: name it "
                                 f"({prog()} worker serve ENVIRONMENT --share)")
        return _serve(args)
    return worker_main(argv, prog=f"{prog()} worker")


def serve_parser() -> argparse.ArgumentParser:
    import os

    p = argparse.ArgumentParser(
        prog=f"{prog()} worker serve",
        description="Serve an environment of the store on this machine with no ComfyUI in front (an on-premises GPU "
                    "machine); with --share every ComfyUI on the store lists it and runs on it, and a designer may "
                    "stop or redeploy it from any of them. Without ENVIRONMENT: the endpoint worker of "
                    "SAGEMAKER_MANIFEST_URI, as SageMaker and local endpoints start it.")
    p.add_argument("environment", nargs="?", help="the environment to serve")
    p.add_argument("--version", type=int, help="its version (default: the newest)")
    p.add_argument("--share", action="store_true", help="serve the team: listen beyond this machine with a token "
                   "of its own, registered in the store (withdrawn on exit)")
    p.add_argument("--host", help="the address to listen on (default: 0.0.0.0 with --share, else 127.0.0.1)")
    p.add_argument("--advertise", help="the address the team reaches this machine at (default: --host, or this "
                   "machine's name resolved when listening on every address)")
    p.add_argument("--name", help="who the team sees serving it (default: this machine's name)")
    p.add_argument("--config-dir", help="folder holding config.json, which names the store (default: as for config; "
                   "COMFYUI_SAGEMAKER_* variables alone work too)")
    p.add_argument("--state-dir", help="the workers' state, logs and model cache (default: serve/ in the "
                   "configuration folder, else ~/.comfyui-sagemaker/serve)")
    p.add_argument("--comfyui-dir", default=os.environ.get("COMFYUI_DIR"), help="the ComfyUI the worker runs "
                   "headless (default: COMFYUI_DIR, else the ComfyUI this extension sits in)")
    p.add_argument("--comfyui-args", default=os.environ.get("WORKER_COMFYUI_ARGS", ""),
                   help="extra arguments for that ComfyUI, e.g. --comfyui-args=--cpu (default: WORKER_COMFYUI_ARGS)")
    return p


def _serve(args: argparse.Namespace) -> int:
    """`worker serve ENVIRONMENT`: local/on_premises.py, on the configuration's store."""
    import signal

    from .core.environments import manifest_key, read_manifest, versions_of
    from .core.identity import display_name, instance_id
    from .core.shared_registry import SharedRegistry, Sharing
    from .core.store import KeyNotFound
    from .core.unreadable import Unreadable
    from .core.worker_contract import WorkerRuntime
    from .local.endpoints import LocalEndpoints
    from .local.on_premises import Serving, advertised, listen_host
    from .stores import make_store, store_uri

    name = names.ENVIRONMENT_NAME.check(args.environment)
    host = listen_host(args.share, args.host)
    advertise = advertised(host, args.advertise) if args.share else host
    config_dir = _config_dir(args)
    cfg = config_mod.load(config_dir)
    if cfg.store == "folder" and not cfg.store_path:
        raise SageMakerError("no store configured: pass --config-dir (a ComfyUI's user/__sagemaker, or a folder whose "
                             "config.json names the store), or set COMFYUI_SAGEMAKER_STORE_PATH")
    store = make_store(cfg)
    versions = versions_of(store, name)
    if not versions:
        raise SageMakerError(f"environment {name!r} is not in the store {store_uri(cfg)}")
    version = versions[-1] if args.version is None else args.version
    if version not in versions:
        raise SageMakerError(f"environment {name!r} has no version {version} (it has {versions})")
    key = manifest_key(name, version)
    try:
        manifest = read_manifest(store.get(key).data, key, name, version)
    except (KeyNotFound, Unreadable) as err:
        raise SageMakerError(f"environment {name!r} version {version} cannot be read: {err}") from None
    comfyui = Path(args.comfyui_dir) if args.comfyui_dir else \
        PACKAGE_DIR.parent.parent if PACKAGE_DIR.parent.name == "custom_nodes" else None
    if comfyui is None or not (comfyui / "main.py").is_file():
        raise SageMakerError(f"no ComfyUI at {comfyui or '(none given)'}: pass --comfyui-dir (or set COMFYUI_DIR) to "
                             "the ComfyUI the worker runs")
    state_dir = Path(args.state_dir) if args.state_dir else \
        (config_dir / "serve" if config_dir else Path.home() / ".comfyui-sagemaker" / "serve")
    folder = state_dir / manifest["name"].lower()  # one environment's endpoint: what a restart here takes back
    sharing = Sharing(SharedRegistry(store), instance_id(folder), args.name or display_name(""), host, advertise) \
        if args.share else None
    serving = Serving(manifest, args.share, _say)
    endpoints = LocalEndpoints(folder, store_uri(cfg), WorkerRuntime(comfyui, args.comfyui_args, PACKAGE_DIR),
                               on_change=serving.changed, sharing=lambda: sharing)
    endpoints.cache = state_dir / "worker-cache"  # the environments served here share their models' cache
    endpoints.dedicated = True  # one ComfyUI per GPU, no idle stop
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: serving.interrupt())
    _say(f"serving {manifest['name']} version {version} from {store_uri(cfg)}" +
         (f", shared with the team at {advertise} as {sharing.owner}" if sharing else " on 127.0.0.1 only") +
         f"; the worker's log: {folder / 'endpoints' / manifest['name'].lower() / 'worker.log'}; Ctrl+C stops it")
    return serving.run(endpoints)


def _rules(args: argparse.Namespace) -> int:
    print(json.dumps(names.rules(), indent=2))
    return 0


def _check_name(args: argparse.Namespace) -> int:
    rule = names.TEMPLATE_NAME if args.kind == "template" else names.ENVIRONMENT_NAME
    rule.check(args.name)
    print(f"{args.kind} name {args.name!r} is valid")
    return 0


def _server(args: argparse.Namespace, method: str, path: str, body: object = None) -> object:
    """Call a running ComfyUI's /sagemaker/ routes (the node registry lives in that process), the whole
    exchange within SERVER_TIMEOUT_S (core/net/http_deadline.py)."""
    import os
    from http.client import HTTPException

    from .core.net.http_deadline import request

    headers = {}
    token = os.environ.get("COMFYUI_SAGEMAKER_TOKEN")
    if token:
        headers["X-SageMaker-Token"] = token
    try:
        status, answer = request(args.url.rstrip("/") + "/sagemaker" + path, method, body, headers, SERVER_TIMEOUT_S)
    except (OSError, HTTPException, ValueError) as err:
        raise SageMakerError(f"cannot reach ComfyUI at {args.url}: {err}") from None
    try:
        data = json.loads(answer)
    except ValueError:
        raise SageMakerError(f"{args.url} answered {status} without JSON: is it ComfyUI?") from None
    if not 200 <= status < 300:
        err = data.get("error", {}) if isinstance(data, dict) else {}
        failure = SageMakerError(err.get("message", f"HTTP {status}"))
        failure.code = err.get("code", "error")
        raise failure
    return data


def _snapshot(args: argparse.Namespace) -> int:
    snap = _server(args, "GET", "/snapshot")
    if args.json:
        print(json.dumps(snap, indent=2))
        return 0
    print(f"ComfyUI {snap['comfyui_version']}, Python {snap['python']}, torch {snap['torch']}, "
          f"{snap['platform']['system']} {snap['platform']['machine']}")
    print(f"custom node packs ({len(snap['custom_nodes'])}):")
    for p in snap["custom_nodes"]:
        ident = p["identity"]
        where = {"git": lambda i: f"{i['url']} @ {i['commit'][:10]}",
                 "registry": lambda i: f"registry {i['cnr_id']} {i['ver']}"}.get(ident["kind"], lambda i: i["kind"])
        flags = " (dirty)" if p.get("dirty") else ""
        print(f"  {p['folder']}: {where(ident)}{flags}")
    print(f"python packages: {len(snap['python_packages'])}; model files: {len(snap['models'])}")
    for problem in snap.get("problems", []):
        print(f"  problem: {problem}")
    return 0


def _analyze(args: argparse.Namespace) -> int:
    try:
        workflow = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise SageMakerError(f"cannot read {args.file}: {err}") from None
    a = _server(args, "POST", "/analyze", {"workflow": workflow})
    if args.json:
        print(json.dumps(a, indent=2))
        return 0
    print(f"format: {a['format']}; packs: {', '.join(a['packs']) or 'core only'}")
    for m in a["missing"]:
        print(f"  missing node type {m['type']} (nodes {', '.join(m['node_ids'])})")
    for m in a["models"]:
        where = "/".join(m.get("candidates", [])) if m["folder"] == "?" else m["folder"]
        state = "present" if m["present"] else "MISSING"
        print(f"  model {where}/{m['name']}: {state} (nodes {', '.join(m['node_ids'])})")
    for i in a["inputs"]:
        print(f"  input {i['name']}: {'present' if i['present'] else 'MISSING'}")
    for w in a["warnings"]:
        print(f"  warning: {w}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    """The environment's endpoint serves an older version again (the running ComfyUI's route: its lease, its
    endpoints, the same checks as the sidebar's button)."""
    from urllib.parse import quote

    names.ENVIRONMENT_NAME.check(args.environment)
    view = _server(args, "POST", f"/environments/{quote(args.environment)}/rollback",
                   {} if args.to is None else {"to": args.to})
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    print(f"endpoint {view['name']} goes back to version {view['version']} ({view['state']}); runs in flight finish "
          "on the version they started on")
    return 0


def _versions(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    names.ENVIRONMENT_NAME.check(args.environment)
    history = _server(args, "GET", f"/environments/{quote(args.environment)}/versions")
    if args.json:
        print(json.dumps(history, indent=2))
        return 0
    for line in history_lines(history):
        print(line)
    return 0


def history_lines(history: dict) -> list[str]:
    """An environment's history as a person reads it (the JSON is `--json`)."""
    lines = []
    for v in history["versions"]:
        serving = " (serving)" if v.get("serving") else ""
        if "problem" in v:
            lines.append(f"v{v['version']}{serving}: {v['problem']}")
            continue
        who = (v.get("published_by") or {}).get("name") or "unknown"
        changes = []
        for what in ("packs", "models", "templates"):
            for how, sign in (("added", "+"), ("removed", "-"), ("changed", "~")):
                changes += [f"{sign}{item}" for item in v["changes"][what].get(how, [])]
        proofs = v.get("proofs")  # core/proofs.py: run before traffic moved to it (None: not proven)
        failed = [f"{r['template']} ({(r.get('problems') or ['failed'])[0]})" for r in (proofs or {}).get("results", [])
                  if not r.get("passed")]
        proven = "" if not proofs else f"; proof failed: {'; '.join(failed)}" if failed else "; proofs passed"
        lines.append(f"v{v['version']}{serving}: {v.get('created_at') or '?'} by {who}; "
                     f"{' '.join(changes) or 'no pack, model or template changed'}{proven}")
    return lines


def _costs(args: argparse.Namespace) -> int:
    """What runs and what it costs: from a running ComfyUI (--url: its local endpoints too), or from a
    configuration without ComfyUI (--config-dir: SageMaker endpoints and the store)."""
    if args.config_dir:
        from .services import Services

        config_dir = Path(args.config_dir)
        services = Services(config_mod.load(config_dir), state_dir=config_dir)
        try:
            report = services.costs.report(fresh=True)
        finally:
            services.close()
    else:
        report = _server(args, "GET", "/costs?fresh=1")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for line in costs_lines(report):
        print(line)
    return 0


def _usd(value: float | None, unit: str = "") -> str:
    return "price unknown" if value is None else f"${value:,.2f}{unit}"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def _idle(seconds: float | None) -> str:
    if seconds is None:
        return "no recent run"
    if seconds == 0:
        return "running now"
    minutes = int(seconds // 60)
    return f"idle {minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"idle {minutes} min"


def costs_lines(report: dict) -> list[str]:
    """The costs report as a person reads it (the JSON is `--json`)."""
    lines = [f"endpoints (region {report['region'] or 'none'}; prices of {report.get('prices_as_of') or '?'}):"]
    for e in report["endpoints"]:
        what = f"{e['instances']} × {e['instance_type']}" if e["kind"] == "sagemaker" else \
            f"{e['instances']} local worker{'s' if e['instances'] != 1 else ''}"
        estimate = " (estimated)" if e["history"] == "estimate" and e["kind"] == "sagemaker" else ""
        lines.append(f"  {e['name']} [{e['kind']}, {e['state']}]: {what}, {_usd(e['hourly'], '/h')}; today "
                     f"{e['instance_hours_today']:.2f} instance-h {_usd(e['cost_today'])}, this month "
                     f"{e['instance_hours_month']:.2f} instance-h {_usd(e['cost_month'])}{estimate}; "
                     f"{_idle(e['idle_s'])}")
    if not report["endpoints"]:
        lines.append("  none")
    storage = report.get("storage")
    if storage:
        lines.append(f"storage ({storage['kind']}): {_size(storage['bytes'])}, {_usd(storage['monthly'], '/month')}")
        for p in storage["prefixes"]:
            lines.append(f"  {p['prefix']} {p['objects']} objects, {_size(p['bytes'])}, {_usd(p['monthly'], '/month')}")
    t = report["totals"]
    lines.append(f"total: {_usd(t['hourly'], '/h')} now; {_usd(t['today'])} today; {_usd(t['month'])} this month; "
                 f"storage {_usd(t['monthly_storage'], '/month')}")
    for problem in report.get("unavailable", []):
        lines.append(f"unavailable ({problem['kind']}): {problem['reason']}")
    return lines


def prog() -> str:
    """How this copy is called: by its folder in a ComfyUI's custom_nodes, else as the installed package."""
    main_module = sys.modules.get("__main__")
    if getattr(main_module, "__package__", None) == "":  # run as `python <folder>`
        return f"python {PACKAGE_DIR.parent.name}/{PACKAGE_DIR.name}" if PACKAGE_DIR.parent.name == "custom_nodes" \
            else f"python {PACKAGE_DIR}"
    return "python -m comfyui_sagemaker"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog(),
        description="comfyui-sagemaker: publish ComfyUI workflows as templates and run them on endpoints.",
    )
    p.add_argument("--version", action="version", version=f"comfyui-sagemaker {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    c = sub.add_parser("config", help="print the effective configuration (never the token)")
    c.add_argument("--config-dir", help="folder holding config.json (default: ComfyUI's user/__sagemaker "
                   "when this extension sits in its custom_nodes)")
    c.set_defaults(func=_config)
    r = sub.add_parser("rules", help="print the name rules as JSON")
    r.set_defaults(func=_rules)
    n = sub.add_parser("check-name", help="check a template or environment name")
    n.add_argument("kind", choices=["template", "environment"])
    n.add_argument("name")
    n.set_defaults(func=_check_name)
    url = {"default": "http://127.0.0.1:8188", "help": "the running ComfyUI (default %(default)s)"}
    sn = sub.add_parser("snapshot", help="what this ComfyUI has: versions, packs, packages, models")
    sn.add_argument("--url", **url)
    sn.add_argument("--json", action="store_true", help="print JSON")
    sn.set_defaults(func=_snapshot)
    an = sub.add_parser("analyze", help="what a workflow needs: packs, models, inputs (UI or API format)")
    an.add_argument("file", help="workflow JSON file")
    an.add_argument("--url", **url)
    an.add_argument("--json", action="store_true", help="print JSON")
    an.set_defaults(func=_analyze)
    rb = sub.add_parser("rollback", help="serve an older version of an environment again (what was kept of it is "
                        "reused, nothing is uploaded)")
    rb.add_argument("environment")
    rb.add_argument("--to", type=int, help="the version (default: the one before the version the endpoint serves)")
    rb.add_argument("--url", **url)
    rb.add_argument("--json", action="store_true", help="print JSON (the endpoint as the route answers it)")
    rb.set_defaults(func=_rollback)
    ve = sub.add_parser("versions", help="an environment's versions: who published each, when, what changed, which "
                        "serves now")
    ve.add_argument("environment")
    ve.add_argument("--url", **url)
    ve.add_argument("--json", action="store_true", help="print JSON")
    ve.set_defaults(func=_versions)
    co = sub.add_parser("costs", help="what runs and what it costs: endpoints, storage, today and this month")
    co.add_argument("--url", **url)
    co.add_argument("--config-dir", help="compute from this configuration without ComfyUI (SageMaker endpoints and "
                    "the store; local endpoints need the ComfyUI that runs them: --url)")
    co.add_argument("--json", action="store_true", help="print JSON (the answer of GET /sagemaker/costs)")
    co.set_defaults(func=_costs)
    aws = sub.add_parser("aws", help="create, inspect or remove the AWS stack (bucket, image build, roles)")
    aws_sub = aws.add_subparsers(dest="aws_command", metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stack", default="comfyui-sagemaker", help="the stack's name (default %(default)s)")
    common.add_argument("--region", help="AWS region (default: boto3's)")
    st = aws_sub.add_parser("setup", parents=[common], help="create or update everything; write the configuration")
    st.add_argument("--bucket", help="the store bucket's name (default: made up by CloudFormation)")
    st.add_argument("--prefix", default="comfyui", help="the store's key prefix (default %(default)s)")
    st.add_argument("--kms-key-arn", help="encrypt the bucket with this KMS key (default: SSE-S3)")
    st.add_argument("--image-tag", help="this build's image tag, never reused: the repository's tags are immutable "
                                         "(default: src-<the source's digest>, so the same source is built once)")
    st.add_argument("--config-dir", help="ComfyUI's user/__sagemaker (default: the ComfyUI this extension is in)")
    st.add_argument("--recreate", action="store_true", help="delete a stack whose creation failed, then create it")
    st.add_argument("--no-build", action="store_true", help="skip the image build (an image is pushed already)")
    st.add_argument("--monthly-budget", type=int, metavar="USD",
                    help="an AWS Budgets budget of this many USD a month for the whole account; 0 removes it")
    st.add_argument("--budget-email", metavar="ADDRESS", help="emailed when the month's forecast spend passes it")
    st.add_argument("--parameter", action="append", metavar="KEY=VALUE",
                    help="any other stack parameter (aws/comfyui-sagemaker.template.json), e.g. "
                         "RetentionDays=90 (default: this ComfyUI's execution_retention_days)")
    st.set_defaults(func=_aws_setup)
    ss = aws_sub.add_parser("status", parents=[common], help="what exists: stack, outputs, image digest, drift")
    ss.add_argument("--json", action="store_true", help="print JSON")
    ss.set_defaults(func=_aws_status)
    td = aws_sub.add_parser("teardown", parents=[common], help="delete the endpoints, then the stack")
    td.add_argument("--force", action="store_true", help="delete running endpoints too")
    td.add_argument("--delete-data", action="store_true", help="also empty and delete the store bucket")
    td.set_defaults(func=_aws_teardown)
    dr = aws_sub.add_parser("doctor", parents=[common], help="check the account as the extension uses it (real "
                            "calls on doctor/ keys of the store, deleted after); exits 1 on a failure")
    dr.add_argument("--instance-type", help="the endpoints' instance type (default: an endpoint's, else ml.g5.xlarge)")
    dr.add_argument("--assume-role", action="append", metavar="ROLE_ARN",
                    help="also read the store as this role (sts:AssumeRole), e.g. an artist's")
    dr.add_argument("--config-dir", help="when there is no stack: the configuration to check (default: as for config)")
    dr.set_defaults(func=_aws_doctor)
    pr = aws_sub.add_parser("prices", help="the price table the endpoint form, the publish dialog and aws setup "
                            "quote (core/prices.json)")
    pr_sub = pr.add_subparsers(dest="prices_command", metavar="ACTION")
    rf = pr_sub.add_parser("refresh", help="read SageMaker hosting prices again from the AWS Price List API "
                           "(pricing:GetProducts)")
    rf.add_argument("--region", dest="price_region", action="append", metavar="REGION",
                    help="a region to price (repeatable; default: the table's and the configuration's)")
    rf.add_argument("--out", help="write the table there (default: the one shipped, core/prices.json)")
    rf.add_argument("--config-dir", help="the configuration whose region is priced (default: as for config)")
    rf.set_defaults(func=_aws_prices_refresh)
    gw = sub.add_parser("gateway", help="serve the template API and the Comfy API v2 without ComfyUI (any number "
                        "of replicas on one store)")
    gw.add_argument("--config-dir", help="folder holding config.json (default: ComfyUI's user/__sagemaker when this "
                    "extension sits in its custom_nodes; COMFYUI_SAGEMAKER_* variables alone work too)")
    gw.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s; 0.0.0.0 in a "
                    "container)")
    gw.add_argument("--port", type=int, default=8189, help="port (default %(default)s)")
    gw.add_argument("--drain-seconds", type=float, default=30.0, help="on SIGTERM, how long requests and runs in "
                    "flight may take to finish (default %(default)s)")
    gw.add_argument("--run-lease-seconds", type=float, default=60.0, help="how long the runs this replica "
                    "follows outlive it if it is killed before another replica takes them over or fails them "
                    "(default %(default)s; each replica looks every half of its own)")
    gw.set_defaults(func=_gateway)
    ws = sub.add_parser("webhook-secret", help="print the webhook signing secret of this configuration (made on "
                        "first use, kept in the configuration folder, readable by you only)")
    ws.add_argument("--config-dir", help="folder holding config.json (default: as for config)")
    ws.add_argument("--rotate", action="store_true", help="make a new secret (receivers must be given it)")
    ws.set_defaults(func=_webhook_secret)
    # Listed for --help; main() hands everything after `worker` to the worker's own parser.
    sub.add_parser("worker", help="the worker of an endpoint (`worker serve`; local endpoints start it)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["worker"]:
            return _worker(argv[1:])
        p = parser()
        args = p.parse_args(argv)
        if not getattr(args, "func", None):
            p.print_help()
            return 2
        if getattr(args, "aws_command", None):
            return _translated(args)
        return args.func(args)
    except SageMakerError as err:
        print(f"error ({err.code}): {err.message}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as err:
        # Typically another Python than ComfyUI's: say which one and what to use instead.
        print(f"error (missing_package): this Python ({sys.executable}) has no module {err.name!r}. Run the "
              "command with ComfyUI's own Python (the one that starts its main.py), after the extension's "
              "install.py.", file=sys.stderr)
        return 1
