"""What each SageMaker endpoint status means for this extension, from the SageMaker API reference
(DescribeEndpoint, EndpointStatus). A test reads the statuses from botocore's service model and fails
when AWS documents one that is not in this table.

- serving: the endpoint takes invocations (Updating and SystemUpdating keep serving the current
  config; RollingBack returns to InService; UpdateRollbackFailed "is in service with a mix of the old
  and new endpoint configurations").
- action for a new version: update in place, recreate (delete, wait until gone, create: "DeleteEndpoint
  is the only operation that can be performed on a failed endpoint"), or wait (busy: maintenance,
  a create/update/rollback/delete in progress; SystemUpdating "cannot be updated or deleted or
  re-scaled until it has completed").
- settled: a monitor stops following it there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Status:
    serving: bool
    on_deploy: str  # "update" | "recreate" | "wait"
    settled: bool
    deletable: bool


STATUSES: dict[str, Status] = {
    "Creating": Status(serving=False, on_deploy="wait", settled=False, deletable=True),
    "Updating": Status(serving=True, on_deploy="wait", settled=False, deletable=True),
    "SystemUpdating": Status(serving=True, on_deploy="wait", settled=False, deletable=False),
    "RollingBack": Status(serving=True, on_deploy="wait", settled=False, deletable=True),
    "InService": Status(serving=True, on_deploy="update", settled=True, deletable=True),
    "UpdateRollbackFailed": Status(serving=True, on_deploy="update", settled=True, deletable=True),
    "OutOfService": Status(serving=False, on_deploy="recreate", settled=True, deletable=True),
    "Failed": Status(serving=False, on_deploy="recreate", settled=True, deletable=True),
    "Deleting": Status(serving=False, on_deploy="wait", settled=False, deletable=False),
}

SERVING = tuple(s for s, v in STATUSES.items() if v.serving)
SETTLED = tuple(s for s, v in STATUSES.items() if v.settled)


def of(status: str) -> Status:
    """An undocumented status (AWS added one): treat it as busy, never as ready."""
    return STATUSES.get(status, Status(serving=False, on_deploy="wait", settled=False, deletable=False))
