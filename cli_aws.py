"""The command line's `aws` commands: create, inspect, check or remove the AWS stack, refresh its price table
(cli.py assembles the command line)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .cli import config_folder, default_config_dir, say
from .core import config as config_mod
from .core.errors import SageMakerError


def add_commands(sub: argparse._SubParsersAction) -> None:
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
    cfg = setup(_aws(args), args.stack, parameters, config_dir, say, recreate=args.recreate, build=not args.no_build,
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

    teardown(_aws(args), args.stack, say, force=args.force, delete_data=args.delete_data)
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
        target = Target(out["StoreBucket"], out["StorePrefix"], aws.region, _stack_image(out, config_folder(args)),
                        args.instance_type)
    else:
        cfg = config_mod.load(config_folder(args))
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
            configured = config_mod.load(config_folder(args)).region
        except SageMakerError:
            configured = ""
        regions |= {configured} if configured else set()
    out = Path(args.out) if args.out else prices.TABLE_PATH
    refresh(client("pricing", PRICING_REGION), regions, say, out)
    return 0


def translated(args: argparse.Namespace) -> int:
    """An `aws` command: AWS's errors in the same words as everywhere else (aws/errors.py)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from .aws.errors import translate

    try:
        return args.func(args)
    except (ClientError, BotoCoreError) as err:
        raise translate(err, getattr(args, "region", None) or "") from None
