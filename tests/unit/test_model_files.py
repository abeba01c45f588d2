"""Listing model folders: names as ComfyUI shows them, loops and broken files survived."""

import os

from comfyui_sagemaker.core import model_files


def make(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_names_are_relative_with_slashes_and_filtered_by_extension(tmp_path):
    make(tmp_path / "loras" / "a.safetensors", b"12345")
    make(tmp_path / "loras" / "sub" / "b.safetensors")
    make(tmp_path / "loras" / "readme.txt")
    index = model_files.scan({"loras": ([str(tmp_path / "loras")], [".safetensors"]),
                              "custom_nodes": ([str(tmp_path)], [])})
    assert sorted(index.files["loras"]) == ["a.safetensors", "sub/b.safetensors"]
    assert index.files["loras"]["a.safetensors"].size == 5
    assert "custom_nodes" not in index.files


def test_first_base_wins_and_missing_bases_are_fine(tmp_path):
    make(tmp_path / "one" / "m.ckpt", b"1")
    make(tmp_path / "two" / "m.ckpt", b"22")
    index = model_files.scan({"checkpoints": ([str(tmp_path / "one"), str(tmp_path / "two"),
                                               str(tmp_path / "nope")], [".ckpt"])})
    assert index.files["checkpoints"]["m.ckpt"].size == 1


def test_symlink_loop_is_cut(tmp_path):
    make(tmp_path / "loras" / "a.safetensors")
    os.symlink(tmp_path / "loras", tmp_path / "loras" / "loop")
    index = model_files.scan({"loras": ([str(tmp_path / "loras")], [".safetensors"])})
    assert list(index.files["loras"]) == ["a.safetensors"]


def test_broken_link_is_reported_not_fatal(tmp_path):
    make(tmp_path / "loras" / "a.safetensors")
    os.symlink(tmp_path / "gone.safetensors", tmp_path / "loras" / "broken.safetensors")
    index = model_files.scan({"loras": ([str(tmp_path / "loras")], [".safetensors"])})
    assert list(index.files["loras"]) == ["a.safetensors"]
    assert any("broken.safetensors" in p for p in index.problems)


def test_unreadable_folder_is_reported_not_fatal(tmp_path, monkeypatch):
    make(tmp_path / "loras" / "a.safetensors")
    make(tmp_path / "loras" / "locked" / "b.safetensors")
    real_scandir = os.scandir

    def scandir(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    index = model_files.scan({"loras": ([str(tmp_path / "loras")], [".safetensors"])})
    assert list(index.files["loras"]) == ["a.safetensors"]
    assert any("Permission denied" in p for p in index.problems)
