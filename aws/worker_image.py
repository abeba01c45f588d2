"""The worker image in the stack's ECR repository: one immutable tag per build, named by digest.

The repository's tags are IMMUTABLE (aws/stack.py): a tag names one image forever, so a build is tagged
with what it was built from, `src-<sha256 of the uploaded source zip, 16 hex>`, never a moving `latest`.
The same source builds the same tag, so a second `aws setup` finds it and builds nothing. The
configuration gets `<repository>@sha256:<digest>`, and every model and endpoint config the extension
creates from it names the image by digest: ECR's lifecycle rule (untagged images only) can never expire
it, and SageMaker can always pull it again to replace or add an instance.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

from ..core.errors import SageMakerError
from .errors import error_code

TAG_PREFIX = "src-"
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")  # ECR API Reference, PutImage: imageTag
MOVING = {"latest"}  # a name that means "the newest": it cannot be, once pushed, in an immutable repository


class ImageError(SageMakerError):
    """The tag the build should make exists already (tags are immutable), or names no image."""

    code = "setup_failed"


def check_tag(tag: str) -> None:
    if not TAG.fullmatch(tag):
        raise ImageError(f"image tag {tag!r} is not valid: letters, digits, '.', '_', '-', at most 128")
    if tag in MOVING:
        raise ImageError(f"image tag {tag!r} would name every build, and the repository's tags are immutable: name "
                         "this build (a version, a date), or pass no --image-tag (the source's digest)")


def source_tag(source: bytes) -> str:
    return TAG_PREFIX + hashlib.sha256(source).hexdigest()[:16]


def repository_of(repository_uri: str) -> str:
    """`<account>.dkr.ecr.<region>.amazonaws.com/<name>` -> `<name>`."""
    return repository_uri.split("/", 1)[1] if "/" in repository_uri else repository_uri


def digest_of(ecr: Any, repository: str, tag: str) -> str | None:
    """The digest ECR has for `tag`, None when no image carries it."""
    try:
        found = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
    except Exception as err:
        if error_code(err) == "ImageNotFoundException":
            return None
        raise
    return found[0]["imageDigest"] if found else None


def pinned(repository_uri: str, digest: str) -> str:
    return f"{repository_uri}@{digest}"


def newest(ecr: Any, repository: str) -> dict | None:
    """The image pushed last (its imageDetails), None in an empty repository."""
    images = [d for page in ecr.get_paginator("describe_images").paginate(repositoryName=repository)
              for d in page["imageDetails"]]
    return max(images, key=lambda d: d["imagePushedAt"]) if images else None


def ensure(aws: Any, repository_uri: str, tag: str, build: Callable[[str], object] | None,
           say: Callable[[str], None], given: bool = False) -> str:
    """The image URI for the configuration: built (or found) under `tag` and pinned by digest.

    `build` is None for --no-build: then an image already under `tag` is pinned, and an absent one is
    named by tag, to be pushed by hand (a later `aws setup` pins it). `given`: the tag was the caller's
    (--image-tag), so an existing image under it was not necessarily built from this source: refused
    rather than silently taken for it."""
    ecr, repository = aws("ecr"), repository_of(repository_uri)
    digest = digest_of(ecr, repository, tag)
    if build is not None:
        if digest is not None and given:
            raise ImageError(f"{repository}:{tag} exists already and the repository's tags are immutable: pass "
                             "another --image-tag, or none (the source's digest names the image)")
        if digest is None:
            build(tag)
            digest = digest_of(ecr, repository, tag)
            if digest is None:
                raise ImageError(f"the build succeeded but ECR has no {repository}:{tag}: see the build's log")
        else:
            say(f"image {repository}:{tag} is built already (the same source): not building it again")
    elif digest is None:
        say(f"no image {repository}:{tag} yet (--no-build): push it with that tag (docs/operations.md), then run "
            "setup again so the configuration names it by digest")
        return f"{repository_uri}:{tag}"
    say(f"worker image {repository}:{tag} is {digest}")
    return pinned(repository_uri, digest)
