"""Hostile node-pack archives: nothing lands outside the target, nothing is left half-extracted.

Each archive is extracted into box/dest beside an empty box/sentinel folder; escapes aim at the sentinel.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
from comfyui_sagemaker.core import packing
from comfyui_sagemaker.core.packing import UnsafeArchive, extract_archive, make_archive
from harness.fixtures import FIXTURES, TEST_PACK

MiB = 1 << 20


class Zeros(io.RawIOBase):
    """`size` zero bytes without holding them in memory (a bomb compresses to almost nothing)."""

    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def f(name: str, data: bytes = b"x", mode: int = 0o644):
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, io.BytesIO(data)


def d(name: str, mode: int = 0o755):
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return info, None


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def special(name: str, kind: bytes):
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


def build(path: Path, *members) -> str:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, data)
    return str(path)


@pytest.fixture
def box(tmp_path):
    (tmp_path / "box" / "sentinel").mkdir(parents=True)
    return tmp_path / "box"


def assert_refused(archive: str, box: Path, match: str, **caps) -> UnsafeArchive:
    with pytest.raises(UnsafeArchive, match=match) as err:
        extract_archive(archive, str(box / "dest"), **caps)
    assert sorted(p.name for p in box.iterdir()) == ["sentinel"], "the target was left behind or something escaped"
    assert list((box / "sentinel").iterdir()) == [], "a file was written outside the target"
    return err.value


def cve_2025_4517(tmp_path: Path, box: Path) -> str:
    """CVE-2025-4517: in-tree-looking links whose resolution exceeds PATH_MAX, so realpath() stops expanding
    them; `escape` then resolves to the target's parent and a file is written through it."""
    steps = "abcdefghijklmnop"
    path_max = os.pathconf(box, "PC_PATH_MAX")
    component = "d" * ((path_max - len(str(box / "dest")) - 1) // (len(steps) + 1))
    members, path = [], ""
    for step in steps:
        members += [d(os.path.join(path, component)), link(os.path.join(path, step), component)]
        path = os.path.join(path, component)
    long_link = os.path.join(*steps, "l" * 254)
    members.append(link(long_link, os.path.join(*[".."] * len(steps))))
    members.append(link("escape", os.path.join(long_link, "..")))
    members.append(f("escape/sentinel/pwned", b"written outside"))
    return build(tmp_path / "cve.tar.gz", *members)


def test_cve_2025_4517_symlink_chain_beyond_path_max(tmp_path, box, monkeypatch):
    archive = cve_2025_4517(tmp_path, box)
    assert_refused(archive, box, "too long")  # its names are longer than the cap
    monkeypatch.setattr(packing, "MAX_NAME_BYTES", 8192)  # the link rules alone refuse it too
    err = assert_refused(archive, box, "under the link 'a'")
    assert len(str(err)) < 300


@pytest.mark.parametrize(("members", "match"), [
    pytest.param([d("sub"), link("l", "sub"), f("l/x.py")], "under the link 'l'", id="file-under-link"),
    pytest.param([d("sub"), link("l", "sub"), d("l/deeper")], "under the link 'l'", id="dir-under-link"),
    pytest.param([link("up", ".."), f("up/sentinel/x")], "outside", id="file-under-escaping-link"),
    pytest.param([f("x.py"), link("a", "x.py"), link("b", "a")], "through the link 'a'", id="link-to-link"),
    pytest.param([d("sub"), link("a", "sub"), link("b", "a/../..")], "through the link 'a'", id="link-through-link"),
    pytest.param([link("self", "self")], "through the link 'self'", id="link-to-itself"),
    pytest.param([link("l", "/etc/passwd")], "absolute", id="absolute-link"),
    pytest.param([link("l", "../sentinel")], "outside", id="escaping-link"),
    pytest.param([d("sub"), link("sub/l", "../../sentinel")], "outside", id="escaping-link-in-subdir"),
    pytest.param([link("l", "a\\..\\..")], "backslash", id="backslash-link"),
    pytest.param([f("../sentinel/x.py")], "'..'", id="dotdot-name"),
    pytest.param([f("ok/../../sentinel/x.py")], "'..'", id="dotdot-inside-name"),
    pytest.param([f("/abs/path.py")], "absolute", id="absolute-name"),
    pytest.param([f("a\\..\\x.py")], "backslash", id="backslash-name"),
    pytest.param([f("x.py"), link("hard", "x.py", tarfile.LNKTYPE)], "hard link", id="hard-link"),
    pytest.param([special("dev", tarfile.CHRTYPE)], "device", id="char-device"),
    pytest.param([special("blk", tarfile.BLKTYPE)], "device", id="block-device"),
    pytest.param([special("fifo", tarfile.FIFOTYPE)], "FIFO", id="fifo"),
    pytest.param([f("x.py", b"one"), f("x.py", b"two")], "twice", id="duplicate-file"),
    pytest.param([f("x.py"), f("./x.py")], "twice", id="duplicate-after-normalising"),
    pytest.param([d("sub"), link("l", "sub"), link("l", "../sentinel")], "twice", id="duplicate-link"),
    pytest.param([f("x"), f("x/y")], "under the file 'x'", id="file-under-file"),
    pytest.param([f("n" * 1100)], "long", id="long-name"),
    pytest.param([f("/".join(["d"] * 70))], "deep", id="deep-name"),
])
def test_hostile_members_are_refused_before_writing(tmp_path, box, members, match):
    assert_refused(build(tmp_path / "evil.tar.gz", f("__init__.py"), *members), box, match)


def test_a_bomb_is_refused_from_its_header(tmp_path, box):
    info = tarfile.TarInfo("zeros.bin")
    info.size = 64 * MiB
    path = build(tmp_path / "bomb.tar.gz", f("__init__.py"), (info, Zeros(info.size)))
    assert os.path.getsize(path) < MiB
    assert_refused(path, box, "more than 1048576 bytes", max_bytes=MiB)


def test_many_small_members_add_up_to_the_size_cap(tmp_path, box):
    path = build(tmp_path / "sum.tar.gz", *[f(f"{i}.bin", bytes(300 * 1024)) for i in range(4)])
    assert_refused(path, box, "more than 1048576 bytes", max_bytes=MiB)


def test_too_many_members(tmp_path, box):
    path = build(tmp_path / "many.tar.gz", *[f(f"{i}.py") for i in range(11)])
    assert_refused(path, box, "more than 10 entries", max_members=10)
    extract_archive(path, str(box / "dest"), max_members=11)
    assert len(list((box / "dest").iterdir())) == 11


def test_a_huge_header_is_refused_without_reading_it_into_memory(tmp_path, box):
    # A GNU long-name header whose payload is 64 MiB of zeros: tarfile would read it in one piece.
    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = tarfile.GNUTYPE_LONGNAME, 64 * MiB
    path = build(tmp_path / "header.tar.gz", (info, Zeros(info.size)), f("x.py"))
    assert_refused(path, box, "header")


def gzip_of(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "blob.tar.gz"
    path.write_bytes(gzip.compress(data))
    return str(path)


def truncated(tmp_path: Path) -> str:
    whole = Path(build(tmp_path / "whole.tar.gz", f("__init__.py"), f("big.bin", os.urandom(200_000))))
    path = tmp_path / "truncated.tar.gz"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return str(path)


def corrupted(tmp_path: Path) -> str:
    whole = Path(build(tmp_path / "whole.tar.gz", f("__init__.py"), f("text.txt", b"hello world " * 20_000)))
    data = bytearray(whole.read_bytes())
    data[-8] ^= 0xFF  # the gzip trailer's CRC: caught only by reading to the end of the stream
    path = tmp_path / "corrupted.tar.gz"
    path.write_bytes(bytes(data))
    return str(path)


def plain_tar_cut_at(size: int):
    def make(tmp_path: Path) -> str:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            for info, data in (f("__init__.py"), f("second.py", b"y" * 600)):
                tar.addfile(info, data)
        return _write(tmp_path / "cut.tar", raw.getvalue()[:size])
    return make


@pytest.mark.parametrize("make", [
    pytest.param(lambda tmp: _write(tmp / "blob.tar.gz", b"this is not an archive " * 100), id="not-an-archive"),
    pytest.param(lambda tmp: _write(tmp / "empty.tar.gz", b""), id="empty-file"),
    pytest.param(lambda tmp: gzip_of(tmp, b"not a tar " * 1000), id="gzip-of-not-a-tar"),
    pytest.param(lambda tmp: _write(tmp / "bad.tar.gz", b"\x1f\x8b" + os.urandom(2000)), id="bad-gzip"),
    pytest.param(truncated, id="truncated"),
    pytest.param(corrupted, id="corrupted"),
    # 512-byte blocks: header, data of __init__.py, header of second.py, its data...
    pytest.param(plain_tar_cut_at(3 * 512 + 100), id="plain-tar-cut-inside-a-member"),
    pytest.param(plain_tar_cut_at(2 * 512), id="plain-tar-cut-between-members"),
])
def test_unreadable_archives_raise_bad_archive(tmp_path, box, make):
    err = assert_refused(make(tmp_path), box, "archive")
    assert err.code == "bad_archive"


def test_a_missing_archive_is_not_called_a_bad_one(tmp_path, box):
    with pytest.raises(FileNotFoundError):
        extract_archive(str(tmp_path / "nothing.tar.gz"), str(box / "dest"))
    assert sorted(p.name for p in box.iterdir()) == ["sentinel"]


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_a_failure_while_writing_removes_the_target(tmp_path, box, monkeypatch):
    path = build(tmp_path / "ok.tar.gz", f("__init__.py"), d("sub"), f("sub/x.py"), link("l", "sub"))

    def refuse(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(packing.os, "symlink", refuse)  # links are written last, after every file
    with pytest.raises(OSError, match="No space"):
        extract_archive(path, str(box / "dest"))
    assert sorted(p.name for p in box.iterdir()) == ["sentinel"]


def test_an_existing_empty_target_is_used_and_emptied_on_failure(tmp_path, box, monkeypatch):
    (box / "dest").mkdir()
    path = build(tmp_path / "ok.tar.gz", f("__init__.py"), link("l", "__init__.py"))
    monkeypatch.setattr(packing.os, "symlink", lambda *a, **k: (_ for _ in ()).throw(OSError(5, "I/O error")))
    with pytest.raises(OSError):
        extract_archive(path, str(box / "dest"))
    assert list((box / "dest").iterdir()) == []


def test_a_target_that_is_a_link_or_not_empty_is_refused(tmp_path, box):
    path = build(tmp_path / "ok.tar.gz", f("__init__.py"))
    os.symlink(box / "sentinel", box / "dest")
    with pytest.raises(FileExistsError):
        extract_archive(path, str(box / "dest"))
    assert list((box / "sentinel").iterdir()) == []
    (box / "dest").unlink()
    (box / "dest").mkdir()
    (box / "dest" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        extract_archive(path, str(box / "dest"))
    assert [p.name for p in (box / "dest").iterdir()] == ["keep.txt"]


def test_in_tree_links_modes_and_odd_but_harmless_names(tmp_path, box):
    path = build(
        tmp_path / "good.tar.gz",
        d("./"),
        f("./__init__.py"),
        d("sub", 0o700),
        f("sub/data.bin", b"\0\1\2", 0o600),
        f("sub/deeper/run.sh", b"#!/bin/sh\n", 0o4775),  # setuid and group-writable: neither survives
        link("to_file", "sub/data.bin"),
        link("to_dir", "sub"),
        link("sub/deeper/up", "../data.bin"),
        link("root", "."),
    )
    extract_archive(path, str(box / "dest"))
    dest = box / "dest"
    assert (dest / "to_file").read_bytes() == b"\0\1\2"
    assert (dest / "to_dir" / "data.bin").read_bytes() == b"\0\1\2"
    assert (dest / "sub" / "deeper" / "up").read_bytes() == b"\0\1\2"
    assert os.readlink(dest / "to_dir") == "sub"
    assert stat.S_IMODE(os.stat(dest / "sub").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(dest / "sub" / "deeper").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(dest / "sub" / "data.bin").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(dest / "sub" / "deeper" / "run.sh").st_mode) == 0o755
    assert list((box / "sentinel").iterdir()) == []


def test_the_test_pack_round_trips(tmp_path, box):
    source = FIXTURES / TEST_PACK
    path, sha, size = make_archive(str(source), str(tmp_path))
    assert make_archive(str(source), str(tmp_path))[1:] == (sha, size)
    extract_archive(path, str(box / "dest"))
    want = sorted(p.relative_to(source) for p in source.rglob("*") if "__pycache__" not in p.parts)
    assert sorted(p.relative_to(box / "dest") for p in (box / "dest").rglob("*")) == want
    for rel in want:
        if (source / rel).is_file():
            assert (box / "dest" / rel).read_bytes() == (source / rel).read_bytes()


# The entry cap counts every header read, before anything is skipped (issue 25, point 7): a 0.9 MB tar.gz
# of 409,600 root-folder entries went past it (root entries were skipped before counting, and tarfile kept
# every header), 101 s and 177 MiB.

def _headers_read(monkeypatch) -> list[int]:
    """How many 512-byte headers tarfile parses from here on."""
    calls = [0]
    frombuf = tarfile.TarInfo.frombuf.__func__

    def counting(cls, buf, encoding, errors):
        calls[0] += 1
        return frombuf(cls, buf, encoding, errors)

    monkeypatch.setattr(tarfile.TarInfo, "frombuf", classmethod(counting))
    return calls


def _gzip_of_repeated(path: Path, head: bytes, block: bytes, times: int, tail: bytes) -> str:
    """head + block * times + tail, gzipped as it is made (never whole in memory)."""
    z = gzip.GzipFile(path, "wb", compresslevel=9, mtime=0)
    with z:
        z.write(head)
        for _ in range(times // 1024):
            z.write(block * 1024)
        z.write(block * (times % 1024))
        z.write(tail)
    return str(path)


def _root_entry() -> bytes:
    info = tarfile.TarInfo("./")
    info.type = tarfile.DIRTYPE
    return info.tobuf(tarfile.USTAR_FORMAT)


def test_root_folder_entries_count_toward_the_cap(tmp_path, box):
    root = d("./")
    path = build(tmp_path / "roots.tar.gz", f("__init__.py"), *[root] * 50)
    assert_refused(path, box, "more than 10 entries", max_members=10)


@pytest.mark.slow  # writes and reads 409,600 headers (seconds of CPU): the whole suite runs it
def test_the_issues_archive_of_409600_root_entries_stops_at_the_cap(tmp_path, box, monkeypatch):
    end = tarfile.NUL * (2 * tarfile.BLOCKSIZE)
    first, _ = f("__init__.py")
    path = _gzip_of_repeated(tmp_path / "dots.tar.gz", first.tobuf(tarfile.USTAR_FORMAT) + b"x".ljust(512, b"\0"),
                             _root_entry(), 409_600, end)
    assert os.path.getsize(path) < MiB
    headers = _headers_read(monkeypatch)
    assert_refused(path, box, f"more than {packing.MAX_MEMBERS} entries")
    # Read as a stream that stops at the cap: not one header past it.
    assert headers[0] == packing.MAX_MEMBERS + 1


def test_headers_are_read_only_up_to_the_cap(tmp_path, box, monkeypatch):
    path = build(tmp_path / "many.tar.gz", *[f(f"{i}.py") for i in range(5000)])
    headers = _headers_read(monkeypatch)
    assert_refused(path, box, "more than 100 entries", max_members=100)
    assert headers[0] == 101


def test_extended_headers_count_and_a_long_chain_of_them_is_refused(tmp_path, box):
    def longname(name: bytes) -> bytes:
        info = tarfile.TarInfo("././@LongLink")
        info.type, info.size = tarfile.GNUTYPE_LONGNAME, len(name) + 1
        data = name + b"\0"
        return info.tobuf(tarfile.GNU_FORMAT) + data.ljust(-(-len(data) // 512) * 512, b"\0")

    last, _ = f("x.py")
    tail = last.tobuf(tarfile.GNU_FORMAT) + b"x".ljust(512, b"\0") + tarfile.NUL * 1024
    # 2000 long-name headers in front of one file: tarfile reads them recursively (a RecursionError).
    chain = _gzip_of_repeated(tmp_path / "chain.tar.gz", b"", longname(b"y.py"), 2000, tail)
    assert_refused(chain, box, "more than 8 extended headers")
    # Each extended header counts: three long-name headers and the file's own are four.
    path = _gzip_of_repeated(tmp_path / "ext.tar.gz", b"", longname(b"a") * 3 + last.tobuf(tarfile.GNU_FORMAT)
                             + b"x".ljust(512, b"\0"), 1, tarfile.NUL * 1024)
    assert_refused(path, box, "more than 3 entries", max_members=3)
    extract_archive(path, str(box / "dest"), max_members=4)
    assert [p.name for p in (box / "dest").iterdir()] == ["a"]
