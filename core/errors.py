"""Every failure a user can meet, one class each.

`code` is the stable snake_case code sent as `{"error": {"code", "message"}}`;
server_routes/errors.py maps each class to one HTTP status.
"""

from __future__ import annotations


class SageMakerError(Exception):
    """Base of the extension's own errors: a message meant for the user."""

    code = "error"

    # What some failures carry besides their message (server_routes/errors.py sends them): per-field reasons,
    # details (per node, what a key made first), and when a client may retry (seconds).
    fields: dict | None = None
    details: dict | None = None
    retry_after: int | None = None

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def message_of(err: BaseException) -> str:
    """What to tell the user of a failure: our message, else the exception's own text."""
    return (err.message if isinstance(err, SageMakerError) else "") or str(err)


class BadRequest(SageMakerError):
    """The request is malformed: not JSON, a missing field, a wrong type."""

    code = "bad_request"


class PayloadTooLarge(SageMakerError):
    """The request body is over the size limit."""

    code = "payload_too_large"


class Forbidden(SageMakerError):
    """The guard refused a request (foreign Origin, Host not allowed, missing token)."""

    code = "forbidden"


class NotFound(SageMakerError):
    """No such route or resource."""

    code = "not_found"


class ConfigInvalid(SageMakerError):
    """The configuration file or an environment variable holds a bad value."""

    code = "config_invalid"


class NameInvalid(SageMakerError):
    """A template or environment name breaks the name rule."""

    code = "invalid_name"


class Conflict(SageMakerError):
    """Someone else changed the thing first (compare-and-swap lost); reload and retry."""

    code = "conflict"


class TemplateExists(SageMakerError):
    """A template with this exact name exists already."""

    code = "template_exists"


class TemplateNotFound(NotFound):
    """No template has this name."""

    code = "not_found"


class EnvironmentNotFound(NotFound):
    """No environment has this name."""

    code = "environment_not_found"


class StoreUnavailable(SageMakerError):
    """The store could not be reached or refused the request (bucket missing, access denied)."""

    code = "store_unavailable"


class RecordCorrupt(SageMakerError):
    """A record in the store cannot be read (not JSON, or not the shape it must have): that one thing fails,
    with its name; lists skip it and say so (its store `key` and the `reason`)."""

    code = "record_corrupt"

    def __init__(self, message: str, key: str = "", reason: str = ""):
        super().__init__(message)
        self.key = key
        self.reason = reason


class TemplateCorrupt(RecordCorrupt):
    """The template's object in the store cannot be read."""

    code = "template_corrupt"


class EnvironmentCorrupt(RecordCorrupt):
    """A version's manifest (or the environment's name claim) in the store cannot be read."""

    code = "environment_corrupt"


class ExecutionCorrupt(RecordCorrupt):
    """The execution's record in the store cannot be read."""

    code = "execution_corrupt"
