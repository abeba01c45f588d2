"""A SageMaker endpoint's log: CloudWatch Logs group `/aws/sagemaker/Endpoints/<endpoint>`, one stream
per instance (`AllTraffic/<instance id>`), where the worker writes its own and its ComfyUI's output.

SageMaker creates that group itself, with no retention (kept, and billed, for good), the first time an
instance logs. So the deploy creates it first, with LOG_RETENTION_DAYS (`keep_logs`): SageMaker then writes
into the group that exists ("Log Amazon SageMaker AI events with Amazon CloudWatch"). Done before
CreateEndpoint rather than after, when there is no telling when SageMaker will have made the group.
"""

from __future__ import annotations

from typing import Any

STREAMS = 5  # the instances that logged last; an endpoint rarely has more that matter at once
# CloudWatch Logs API Reference, "PutRetentionPolicy": retentionInDays is one of these values.
RETENTION_VALUES = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                    3288, 3653)
LOG_RETENTION_DAYS = 30  # endpoint logs and the image build's (aws/stack.py's LogRetentionDays default)


def log_group(endpoint: str) -> str:
    return f"/aws/sagemaker/Endpoints/{endpoint}"


def keep_logs(logs: Any, endpoint: str, days: int = LOG_RETENTION_DAYS) -> None:
    """The endpoint's log group, made if absent, with its log events kept `days` days."""
    from botocore.exceptions import ClientError

    from .errors import error_code

    if days not in RETENTION_VALUES:
        raise ValueError(f"CloudWatch Logs keeps log events one of {RETENTION_VALUES} days, not {days}")
    group = log_group(endpoint)
    try:
        logs.create_log_group(logGroupName=group)
    except ClientError as err:
        if error_code(err) != "ResourceAlreadyExistsException":  # an earlier deploy of the same endpoint
            raise
    logs.put_retention_policy(logGroupName=group, retentionInDays=days)


def read_logs(logs: Any, endpoint: str, tail: int, contains: str | None = None) -> str:
    """The last `tail` lines across the newest streams, oldest first, each with its instance; with
    `contains`, only lines holding it (CloudWatch's own filter: a quoted term matches it exactly)."""
    from botocore.exceptions import ClientError

    group = log_group(endpoint)
    if tail == 0:
        return ""
    try:
        streams = logs.describe_log_streams(logGroupName=group, orderBy="LastEventTime", descending=True,
                                            limit=STREAMS)["logStreams"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return f"no log yet: CloudWatch has no group {group} (the endpoint's instances have not started)\n"
        raise
    names = [s["logStreamName"] for s in streams]
    if not names:
        return f"no log yet in {group}\n"
    events: list[tuple[int, str, str]] = []
    for name in names:
        if contains:
            batch = _filtered(logs, group, name, '"' + contains.replace('"', "") + '"', tail)
        else:
            r = logs.get_log_events(logGroupName=group, logStreamName=name, limit=tail, startFromHead=False)
            batch = r.get("events", [])
        instance = name.rsplit("/", 1)[-1]
        events += [(e["timestamp"], instance, e["message"].rstrip("\n")) for e in batch]
    events.sort()
    return "".join(f"[{instance}] {message}\n" for _, instance, message in events[-tail:])


def _filtered(logs: Any, group: str, stream: str, pattern: str, tail: int, pages: int = 10) -> list[dict]:
    """FilterLogEvents answers oldest first, a page at a time: keep the last `tail` of a few pages."""
    kept: list[dict] = []
    token = None
    for _ in range(pages):
        args = {"logGroupName": group, "logStreamNames": [stream], "filterPattern": pattern}
        if token:
            args["nextToken"] = token
        r = logs.filter_log_events(**args)
        kept = (kept + r.get("events", []))[-tail:]
        token = r.get("nextToken")
        if not token:
            break
    return kept
