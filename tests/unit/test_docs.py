"""The docs stay true to the tree: the Layout names every top-level file and folder, and every relative link
(and its #anchor) in README.md and docs/ leads somewhere."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def tracked_top_level() -> set[str]:
    r = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout:
        pytest.skip("not a git checkout")
    return {line.split("/")[0] + ("/" if "/" in line else "") for line in r.stdout.splitlines()}


def test_layout_lists_every_top_level_file_and_folder():
    layout = (ROOT / "docs" / "architecture.md").read_text().split("## Layout", 1)[1]
    listed = set(re.findall(r"^\| `([^`]+)` \|", layout, re.M))
    missing = tracked_top_level() - listed
    assert not missing, f"docs/architecture.md's Layout lacks {sorted(missing)}"


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    return {re.sub(r"[^\w\- ]", "", m.strip().lower()).replace(" ", "-")
            for m in re.findall(r"^#+ (.*)$", path.read_text(), re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc):
    for link in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        target = (doc.parent / path).resolve() if path else doc
        assert target.exists(), f"{doc.name}: {link} leads nowhere"
        if anchor and target.is_file():
            assert anchor in anchors(target), f"{doc.name}: {link} names no heading of {target.name}"
