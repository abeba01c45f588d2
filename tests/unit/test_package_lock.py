"""The publish's list of installed packages: read once, kept while nothing is installed or removed, and read
again as soon as a folder on sys.path changes (ComfyUI-Manager installs while ComfyUI runs)."""

from __future__ import annotations

import sys

from comfyui_sagemaker.core import snapshot


def dist(folder, name, version, files=("pkg/__init__.py",)):
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files))


def ours(lock):
    return {e["name"]: e for e in lock if e["name"].startswith("smtest-")}


def test_an_install_or_uninstall_is_seen_by_the_next_publish(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    monkeypatch.setattr(sys, "path", [str(first), str(second), *sys.path])
    dist(first, "smtest-pure", "1.0")
    dist(second, "smtest-pure", "2.0")  # shadowed: the import system finds the first
    assert ours(snapshot.package_lock()) == {
        "smtest-pure": {"name": "smtest-pure", "version": "1.0", "platform_specific": False}}
    dist(second, "smtest-native", "3.1", files=("native/_speed.cpython-311-x86_64-linux-gnu.so",))
    assert ours(snapshot.package_lock())["smtest-native"] == {"name": "smtest-native", "version": "3.1",
                                                               "platform_specific": True}
    for f in (first / "smtest-pure-1.0.dist-info").iterdir():
        f.unlink()
    (first / "smtest-pure-1.0.dist-info").rmdir()
    assert ours(snapshot.package_lock())["smtest-pure"]["version"] == "2.0"


def test_the_kept_list_is_not_shared_with_callers(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    dist(tmp_path, "smtest-pure", "1.0")
    snapshot.package_lock()[0]["version"] = "changed by a caller"
    assert all(e["version"] != "changed by a caller" for e in snapshot.package_lock())
