"""One contract, two stores: the folder store and the S3 store (on moto)."""

import pytest
from comfyui_sagemaker.core.store import KeyExists, KeyNotFound, PreconditionFailed, check_key


def test_create_then_get(store):
    etag = store.create("templates/a.json", b"one")
    got = store.get("templates/a.json")
    assert got.data == b"one" and got.etag == etag


def test_create_is_exclusive(store):
    store.create("templates/a.json", b"one")
    with pytest.raises(KeyExists):
        store.create("templates/a.json", b"two")
    assert store.get("templates/a.json").data == b"one"


def test_replace_is_compare_and_swap(store):
    etag = store.create("templates/a.json", b"one")
    new = store.replace("templates/a.json", b"two", if_match=etag)
    assert store.get("templates/a.json").data == b"two"
    with pytest.raises(PreconditionFailed):
        store.replace("templates/a.json", b"three", if_match=etag)  # stale
    assert store.get("templates/a.json") .data == b"two"
    store.replace("templates/a.json", b"three", if_match=new)
    assert store.get("templates/a.json").data == b"three"


def test_missing_keys(store):
    with pytest.raises(KeyNotFound):
        store.get("templates/none.json")
    with pytest.raises(KeyNotFound):
        store.replace("templates/none.json", b"x", if_match="whatever")
    with pytest.raises(KeyNotFound):
        store.delete("templates/none.json")
    assert not store.exists("templates/none.json")


def test_put_overwrites_and_delete_removes(store):
    store.put("blobs/sha256/ab", b"1")
    store.put("blobs/sha256/ab", b"1")
    assert store.get("blobs/sha256/ab").data == b"1"
    store.delete("blobs/sha256/ab")
    assert not store.exists("blobs/sha256/ab")


def test_list_is_recursive_sorted_and_scoped(store):
    for key in ("templates/b.json", "templates/a.json", "templates/sub/c.json", "other/x.json"):
        store.put(key, b"{}")
    assert store.list("templates/") == ["templates/a.json", "templates/b.json", "templates/sub/c.json"]
    assert store.list("nothing/") == []


def test_case_distinct_keys_coexist(store):
    store.create("templates/_foo.json", b"Foo")
    store.create("templates/foo.json", b"foo")
    assert store.get("templates/_foo.json").data == b"Foo"


@pytest.mark.parametrize("key", ["../x", "a/../b", "/abs", "a//b", "a\\b", "a b", "", "a/./b", "é"])
def test_bad_keys_are_refused(key):
    with pytest.raises(ValueError):
        check_key(key)


def test_stamps_change_with_the_object(store):
    etag = store.create("templates/a.json", b"one")
    first = store.list_stamps("templates/")
    assert list(first) == ["templates/a.json"]
    assert store.list_stamps("templates/") == first
    store.replace("templates/a.json", b"two", if_match=etag)
    second = store.list_stamps("templates/")
    assert second["templates/a.json"] != first["templates/a.json"]
    store.put("templates/a.json", b"three")
    assert store.list_stamps("templates/")["templates/a.json"] != second["templates/a.json"]


def test_files_stream_in_and_out(store, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"0123456789" * 100_000)
    seen = []
    store.put_file("blobs/sha256/abc", str(src), on_bytes=seen.append)
    assert sum(seen) == 1_000_000
    assert store.size("blobs/sha256/abc") == 1_000_000 and store.size("blobs/sha256/none") is None
    dest = tmp_path / "out" / "dest.bin"
    dest.parent.mkdir()
    store.get_file("blobs/sha256/abc", str(dest))
    assert dest.read_bytes() == src.read_bytes()
    with pytest.raises(KeyNotFound):
        store.get_file("blobs/sha256/none", str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_aborted_upload_leaves_no_object(store, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 20_000_000)

    def boom(n):
        raise RuntimeError("store failed in the middle")

    with pytest.raises(RuntimeError, match="in the middle"):
        store.put_file("blobs/sha256/partial", str(src), on_bytes=boom)
    assert store.size("blobs/sha256/partial") is None
    assert store.list("blobs/") == []


def test_a_blob_is_stored_only_under_its_own_digest(store, tmp_path):
    import hashlib

    from comfyui_sagemaker.core.store import BlobMismatch

    data = b"model bytes" * 1000
    digest = hashlib.sha256(data).hexdigest()
    src = tmp_path / "model.safetensors"
    src.write_bytes(data)
    assert not store.has_blob(digest, len(data))
    store.put_blob(digest, str(src))
    assert store.has_blob(digest, len(data)) and store.get(f"blobs/sha256/{digest}").data == data
    if store.kind == "s3":
        return  # S3 checks the bytes against x-amz-checksum-sha256; moto does not: test_s3_store_requests shows it
    # The file was rewritten after it was hashed: nothing is stored under the old digest.
    src.write_bytes(b"rewritten" * 1000)
    other = hashlib.sha256(b"what it was when hashed").hexdigest()
    with pytest.raises(BlobMismatch):
        store.put_blob(other, str(src))
    assert not store.exists(f"blobs/sha256/{other}") and not store.has_blob(other, len(b"rewritten" * 1000))
    with pytest.raises(ValueError):
        store.put_blob("../../config", str(src))


def test_a_corrupted_blob_is_not_taken_as_present(store, tmp_path):
    import hashlib

    data = b"honest bytes" * 100
    digest = hashlib.sha256(data).hexdigest()
    store.put(f"blobs/sha256/{digest}", b"tampered byte" * 100)  # same size, other content
    assert not store.has_blob(digest, len(data))  # on S3: the stored object's checksum is not the digest
    src = tmp_path / "f"
    src.write_bytes(data)
    store.put_blob(digest, str(src))  # a publish writes it again
    assert store.has_blob(digest, len(data)) and store.get(f"blobs/sha256/{digest}").data == data


def test_sweep_removes_what_a_killed_writer_left(tmp_path):
    import os
    import time

    from comfyui_sagemaker.local.folder_store import FolderStore

    store = FolderStore(tmp_path / "store")
    store.put("blobs/sha256/" + "a" * 64, b"x")
    old = tmp_path / "store" / "blobs" / "sha256" / ".tmp-dead"
    old.write_bytes(b"half a model")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    fresh = tmp_path / "store" / "blobs" / "sha256" / ".tmp-writing"
    fresh.write_bytes(b"being written now")
    assert store.sweep() == ["blobs/sha256/.tmp-dead"]
    assert not old.exists() and fresh.exists() and store.exists("blobs/sha256/" + "a" * 64)


def test_list_page_lists_one_folder_in_order_a_page_at_a_time(store):
    for name in ("c", "a", "b", "d"):
        store.put(f"things/{name}", b"")
    store.put("things/sub/x", b"")  # a sub-folder's keys are not the folder's
    assert store.list_page("things/") == ["things/a", "things/b", "things/c", "things/d"]
    assert store.list_page("things/", "things/b", 1) == ["things/c"]
    assert store.list_page("things/", "things/d") == [] and store.list_page("none/") == []


def test_get_if_changed_answers_nothing_for_an_unchanged_object(store):
    etag = store.create("changes/x.json", b"one")
    assert store.get_if_changed("changes/x.json", etag) is None
    assert store.get_if_changed("changes/x.json", None).data == b"one"
    store.put("changes/x.json", b"two")
    assert store.get_if_changed("changes/x.json", etag).data == b"two"
    with pytest.raises(KeyNotFound):
        store.get_if_changed("changes/none.json", etag)
