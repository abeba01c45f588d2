import io
import os
import tarfile

import pytest
from comfyui_sagemaker.core.packing import UnsafeArchive, extract_archive, make_archive


def pack(tmp_path):
    root = tmp_path / "pack"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("x = 1\n")
    (root / "sub" / "data.bin").write_bytes(b"\0\1\2")
    (root / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o755)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.pyc").write_bytes(b"cache")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")
    os.symlink("sub/data.bin", root / "link.bin")
    return root


def test_archives_are_deterministic_and_leave_out_caches(tmp_path):
    root = pack(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    p1, sha1, size1 = make_archive(str(root), str(out))
    os.utime(root / "__init__.py", (1, 1))  # times do not matter
    p2, sha2, size2 = make_archive(str(root), str(out))
    assert (sha1, size1) == (sha2, size2) and p1 != p2
    with tarfile.open(p1) as tar:
        assert sorted(tar.getnames()) == ["__init__.py", "link.bin", "run.sh", "sub/data.bin"]
    (root / "__init__.py").write_text("x = 2\n")
    assert make_archive(str(root), str(out))[1] != sha1


def test_round_trip(tmp_path):
    root = pack(tmp_path)
    path, _, _ = make_archive(str(root), str(tmp_path))
    extract_archive(path, str(tmp_path / "dest"))
    dest = tmp_path / "dest"
    assert (dest / "sub" / "data.bin").read_bytes() == b"\0\1\2"
    assert os.readlink(dest / "link.bin") == "sub/data.bin"
    assert os.access(dest / "run.sh", os.X_OK)


def evil(tmp_path, *members):
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return str(path)


def entry(name, kind=tarfile.REGTYPE, data=b"x", linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, len(data or b""), linkname
    return info, data if kind == tarfile.REGTYPE else None


@pytest.mark.parametrize("member", [
    entry("../escape.py"),
    entry("/abs/path.py"),
    entry("ok/../../escape.py"),
    entry("link", tarfile.SYMTYPE, linkname="/etc/passwd"),
    entry("link", tarfile.SYMTYPE, linkname="../../outside"),
    entry("hard", tarfile.LNKTYPE, linkname="__init__.py"),
    entry("dev", tarfile.CHRTYPE),
    entry("fifo", tarfile.FIFOTYPE),
])
def test_unsafe_archives_are_refused_before_writing(tmp_path, member):
    path = evil(tmp_path, entry("__init__.py"), member)
    with pytest.raises(UnsafeArchive):
        extract_archive(path, str(tmp_path / "dest"))
    assert not (tmp_path / "dest").exists()
    assert not (tmp_path / "escape.py").exists()
