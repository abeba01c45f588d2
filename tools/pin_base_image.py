"""Pin worker/Dockerfile's base by digest: `python3 tools/pin_base_image.py` (stdlib only; needs public.ecr.aws).

Reads `ARG BASE=public.ecr.aws/<repository>:<tag>[@sha256:...]`, asks ECR Public for the digest that tag names
now (the registry's anonymous pull token, then a HEAD of the manifest: its Docker-Content-Digest, the index
for a multi-platform image, so Docker still picks the platform) and writes `<repository>:<tag>@<digest>` back.
The tag stays for the reader; Docker pulls by the digest. Run it to move the base on purpose, then build.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[1] / "worker" / "Dockerfile"
REGISTRY = "public.ecr.aws"
LINE = re.compile(r"^ARG BASE=(?P<image>public\.ecr\.aws/(?P<repo>[^:@\s]+):(?P<tag>[^@\s]+))"
                  r"(?:@sha256:[0-9a-f]{64})?$", re.M)
ACCEPT = ", ".join(["application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])


def registry_digest(repository: str, tag: str) -> str:
    token_url = f"https://{REGISTRY}/token/?scope=repository:{repository}:pull"
    with urllib.request.urlopen(token_url, timeout=30) as r:  # noqa: S310 - a fixed https URL
        token = json.load(r)["token"]
    request = urllib.request.Request(f"https://{REGISTRY}/v2/{repository}/manifests/{tag}", method="HEAD",
                                     headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT})
    with urllib.request.urlopen(request, timeout=30) as r:  # noqa: S310
        digest = r.headers["Docker-Content-Digest"]
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest or ""):
        raise SystemExit(f"{REGISTRY} answered no digest for {repository}:{tag}")
    return digest


def pinned(text: str, digest_of: Callable[[str, str], str] = registry_digest) -> str:
    m = LINE.search(text)
    if not m:
        raise SystemExit("worker/Dockerfile has no `ARG BASE=public.ecr.aws/<repository>:<tag>` line")
    return text[:m.start()] + f"ARG BASE={m['image']}@{digest_of(m['repo'], m['tag'])}" + text[m.end():]


def main() -> int:
    text = DOCKERFILE.read_text()
    DOCKERFILE.write_text(pinned(text))
    print(LINE.search(DOCKERFILE.read_text()).group(0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
