"""The guard: who may call the extension's routes.

- Host must be loopback, one of ComfyUI's explicit listen addresses, or in
  `allowed_hosts` (a DNS-rebinding page reaches 127.0.0.1 under its own name).
  Checked on every route, reads included: templates and environments are
  the designer's data.
- A token (header X-SageMaker-Token, or `Authorization: Bearer <token>` as the Comfy API v2's clients
  send it) is required when one is configured or
  when ComfyUI listens off loopback: then on every route, reads included
  (manifests hold paths, logs hold tracebacks), except the public
  `/health` and `/rules`.
- On routes that change state (anything but GET/HEAD): an Origin, when the
  browser sends one, must match Host.
Non-browser clients (curl, scripts) send no Origin and are judged by Host and token.
"""

from __future__ import annotations

import hmac
import ipaddress
import urllib.parse
from collections.abc import Iterable, Mapping

from ..core.errors import Forbidden

TOKEN_HEADER = "X-SageMaker-Token"
SAFE_METHODS = frozenset({"GET", "HEAD"})
# Readable without the token: what a browser needs to know that it must ask for one.
PUBLIC_PATHS = frozenset({"/health", "/rules"})


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listens_off_loopback(listen: Iterable[str]) -> bool:
    return any(not is_loopback(a) for a in listen)


def _hostname(netloc: str) -> str | None:
    try:
        return urllib.parse.urlsplit("//" + netloc).hostname
    except ValueError:
        return None


def token_required(listen: Iterable[str], token: str) -> bool:
    return bool(token) or listens_off_loopback([a.strip("[]").lower() for a in listen])


class TokenRefused(Forbidden):
    """The token is needed and missing or wrong (the v2 face answers 401 unauthorized for it)."""


def presented(headers: Mapping[str, str]) -> str:
    """The token a request carries: X-SageMaker-Token, else an Authorization bearer token."""
    token = headers.get(TOKEN_HEADER, "")
    if not token:
        scheme, _, value = headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            token = value.strip()
    return token


def authorized(headers: Mapping[str, str], *, listen: Iterable[str], token: str) -> bool:
    """The caller may see everything: no token is needed, or it sent the right one."""
    if not token_required(listen, token):
        return True
    return bool(token) and hmac.compare_digest(presented(headers).encode(), token.encode())


def check(
    method: str,
    headers: Mapping[str, str],
    *,
    listen: Iterable[str],
    allowed_hosts: Iterable[str],
    token: str,
    path: str = "",
) -> None:
    """Raise Forbidden, saying why, unless the request may go on. `path` is relative to /sagemaker."""
    listen = [a.strip("[]").lower() for a in listen]
    host_header = headers.get("Host", "")
    host = _hostname(host_header.lower())
    explicit = {a for a in listen if a not in ("0.0.0.0", "::")}
    if not (is_loopback(host) or host in explicit or host in set(allowed_hosts)):
        raise Forbidden(
            f"Host {host_header!r} is not allowed; add it to allowed_hosts in the configuration"
        )
    reading = method.upper() in SAFE_METHODS
    if reading and path in PUBLIC_PATHS:
        return
    if not reading:
        origin = headers.get("Origin")
        if origin is not None:
            parsed = urllib.parse.urlsplit(origin)
            if origin == "null" or parsed.netloc.lower() != host_header.lower():
                raise Forbidden(f"cross-origin request refused (Origin {origin!r}, Host {host_header!r})")
    if token_required(listen, token):
        if not token:
            raise Forbidden(
                "ComfyUI listens beyond this machine: set a token in the configuration to allow access"
            )
        if not authorized(headers, listen=listen, token=token):
            raise TokenRefused(f"missing or wrong {TOKEN_HEADER} header (or Authorization: Bearer): enter the "
                               "token in the SageMaker tab")
