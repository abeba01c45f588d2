"""Snapshot and analysis against the real ComfyUI, with a test-written node pack and small model files."""

import uuid

import pytest
from harness.fixtures import TEST_PACK
from harness.images import png

pytestmark = pytest.mark.comfyui


@pytest.fixture(scope="module")
def input_name(comfyui):
    name = f"an{uuid.uuid4().hex[:8]}.png"
    comfyui.client().upload_image(name, png())
    return name


def api_workflow(image):
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "SMTestScale", "inputs": {"image": ["1", 0], "lora_name": "style.safetensors",
                                                        "factor": 0.5}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny.safetensors"}},
        "5": {"class_type": "MysteryNode", "inputs": {"model": "shared.safetensors", "steps": 3}},
        "6": {"class_type": "LoadImage", "inputs": {"image": "not-there.png"}},
        "7": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20, "cfg": 8.0, "sampler_name": "euler",
                                                     "scheduler": "normal", "denoise": 1.0}},
    }


def ui_node(id, type, widgets, **extra):
    return {"id": id, "type": type, "pos": [0, 0], "size": [100, 100], "inputs": [], "outputs": [],
            "widgets_values": widgets, "properties": {}, **extra}


def ui_workflow(image):
    return {
        "nodes": [
            ui_node(1, "LoadImage", [image, "image"]),
            ui_node(2, "SMTestScale", ["style.safetensors", 0.5]),
            ui_node(3, "SaveImage", ["x"]),
            ui_node(4, "CheckpointLoaderSimple", ["tiny.safetensors"]),
            ui_node(5, "MysteryNode", ["shared.safetensors", 3]),
            ui_node(6, "LoadImage", ["not-there.png", "image"]),
            ui_node(7, "KSampler", [5, "randomize", 20, 8.0, "euler", "normal", 1.0]),
            ui_node(8, "Note", ["just a note"]),
            ui_node(9, "Reroute", []),
            ui_node(11, "MarkdownNote", ["# hi"]),
        ],
        # A link to node 99, which does not exist: analysis must not care.
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 99, 0, 3, 0, "IMAGE"]],
        "extra": {},
        "version": 0.4,
    }


def analyze(client, workflow):
    r = client.post("/sagemaker/analyze", json={"workflow": workflow})
    assert r.status_code == 200, r.text
    return r.json()


def strip_ids(result):
    out = dict(result)
    out.pop("format")
    out.pop("warnings")
    for key in ("nodes", "models", "inputs", "missing"):
        out[key] = [{k: v for k, v in e.items() if k != "node_ids"} for e in out[key]]
    return out


def test_api_format(client, input_name):
    a = analyze(client, api_workflow(input_name))
    assert a["format"] == "api"
    packs = {n["type"]: n["pack"] for n in a["nodes"]}
    assert packs == {"LoadImage": "core", "SMTestScale": TEST_PACK, "SaveImage": "core",
                     "CheckpointLoaderSimple": "core", "KSampler": "core"}
    assert a["packs"] == [TEST_PACK]
    assert a["missing_nodes"] == ["MysteryNode"]
    assert a["missing"] == [{"type": "MysteryNode", "node_ids": ["5"]}]
    models = {(m["folder"], m["name"]): m for m in a["models"]}
    assert models[("loras", "style.safetensors")]["present"] is True
    assert models[("loras", "style.safetensors")]["node_ids"] == ["2"]
    assert models[("checkpoints", "tiny.safetensors")]["present"] is True
    shared = models[("?", "shared.safetensors")]
    assert shared["candidates"] == ["loras", "vae"] and shared["node_ids"] == ["5"]
    # KSampler's sampler/scheduler combos are not models.
    assert all("euler" not in m["name"] for m in a["models"])
    inputs = {i["name"]: i for i in a["inputs"]}
    assert inputs[input_name]["present"] is True and inputs["not-there.png"]["present"] is False


def test_ui_and_api_formats_give_the_same_answer(client, input_name):
    ui = analyze(client, ui_workflow(input_name))
    api = analyze(client, api_workflow(input_name))
    assert ui["format"] == "ui"
    assert strip_ids(ui) == strip_ids(api)
    # ... and the same node ids, since UI ids are the API ids here.
    assert {m["name"]: m["node_ids"] for m in ui["models"]} == {m["name"]: m["node_ids"] for m in api["models"]}


def test_declared_models_of_a_missing_node(client, input_name):
    wf = ui_workflow(input_name)
    wf["nodes"][4]["properties"]["models"] = [
        {"name": "absent.safetensors", "directory": "checkpoints", "url": "https://example.invalid/absent"},
        {"name": "tiny.safetensors", "directory": "checkpoints"},
    ]
    models = {(m["folder"], m["name"]): m for m in analyze(client, wf)["models"]}
    absent = models[("checkpoints", "absent.safetensors")]
    assert absent["present"] is False and absent["url"] == "https://example.invalid/absent"
    assert absent["node_ids"] == ["5"]
    assert models[("checkpoints", "tiny.safetensors")]["present"] is True


def test_subgraphs_are_flattened_and_self_reference_is_cut(client, input_name):
    inner = {"id": "aaaa-1111", "nodes": [ui_node(1, "SMTestScale", ["sub/deep.safetensors", 0.5]),
                                          ui_node(2, "bbbb-2222", [])]}
    looping = {"id": "bbbb-2222", "nodes": [ui_node(1, "bbbb-2222", []), ui_node(2, "UnknownInLoop", [])]}
    wf = {"nodes": [ui_node(10, "aaaa-1111", []), ui_node(11, "bbbb-2222", [])], "links": [],
          "definitions": {"subgraphs": [inner, looping]}}
    a = analyze(client, wf)
    assert {(m["folder"], m["name"]) for m in a["models"]} == {("loras", "sub/deep.safetensors")}
    assert a["models"][0]["node_ids"] == ["10:1"]
    assert a["missing"] == [{"type": "UnknownInLoop", "node_ids": ["10:2:2", "11:2"]}]
    assert any("contains itself" in w for w in a["warnings"])


def test_ten_thousand_nodes(client):
    wf = {"nodes": [ui_node(i, "SMTestScale" if i % 2 else "ImageInvert", ["style.safetensors", 0.5])
                    for i in range(10_000)], "links": []}
    a = analyze(client, wf)
    assert len(a["models"]) == 1 and len(a["models"][0]["node_ids"]) == 5_000


@pytest.mark.parametrize("body, needle", [
    (b"not json", "not JSON"),
    (b'{"workflow": 5}', "unknown workflow format"),
    (b'{"workflow": {"a": 1}}', "unknown workflow format"),
    (b'{"workflow": []}', "unknown workflow format"),
    (b'{"nothing": 1}', "missing field"),
])
def test_bad_workflows_are_400(client, body, needle):
    r = client.post("/sagemaker/analyze", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and needle in r.json()["error"]["message"], r.text
    if "format" in needle:
        assert "UI format" in r.json()["error"]["message"] and "API format" in r.json()["error"]["message"]


def test_snapshot(client, comfyui):
    s = client.get("/sagemaker/snapshot").json()
    assert s["comfyui_version"] == "0.3.75" and s["python"].startswith("3.")
    assert s["torch"].startswith("2.") and s["platform"]["system"]
    packs = {p["folder"]: p for p in s["custom_nodes"]}
    test_pack = packs[TEST_PACK]
    assert test_pack["identity"]["kind"] == "git"
    assert test_pack["identity"]["url"] == "https://example.invalid/sm_test_pack.git"
    assert len(test_pack["identity"]["commit"]) == 40 and test_pack["dirty"] is False
    assert len(test_pack["digest"]) == 64
    assert packs["comfyui-sagemaker"]["builtin"] is True and packs["comfyui-sagemaker"]["symlink"] is True
    broken = packs["sm_broken_git"]
    assert broken["dirty"] is True and broken["identity"] == {"kind": "content"} and "broken" in broken["problem"]
    linked = packs["sm_linked_pack"]
    assert linked["symlink"] is True and linked["identity"] == {"kind": "content"} and len(linked["digest"]) == 64
    models = {(m["folder"], m["name"]): m for m in s["models"]}
    assert models[("loras", "sub/deep.safetensors")]["size"] == 1
    assert ("vae", "shared.safetensors") in models
    assert any(p["name"].lower() == "aiohttp" for p in s["python_packages"])


def test_snapshot_digest_changes_with_the_pack(client, comfyui):
    before = {p["folder"]: p for p in client.get("/sagemaker/snapshot").json()["custom_nodes"]}
    pack = comfyui.base / "custom_nodes" / TEST_PACK
    (pack / "extra.txt").write_text("local change")
    try:
        after = {p["folder"]: p for p in client.get("/sagemaker/snapshot").json()["custom_nodes"]}
        assert after[TEST_PACK]["digest"] != before[TEST_PACK]["digest"]
        assert after[TEST_PACK]["dirty"] is True
    finally:
        (pack / "extra.txt").unlink()


def test_cli_analyze_and_snapshot(comfyui, input_name, tmp_path):
    import json
    import subprocess
    import sys

    path = tmp_path / "wf.json"
    path.write_text(json.dumps(ui_workflow(input_name)))
    cli = [sys.executable, "-P", "-m", "comfyui_sagemaker"]
    r = subprocess.run([*cli, "analyze", str(path), "--url", comfyui.url], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "missing node type MysteryNode (nodes 5)" in r.stdout
    assert "model loras/style.safetensors: present" in r.stdout
    r = subprocess.run([*cli, "analyze", str(path), "--url", comfyui.url, "--json"], capture_output=True, text=True)
    assert json.loads(r.stdout)["missing_nodes"] == ["MysteryNode"]
    path.write_text("[1]")
    r = subprocess.run([*cli, "analyze", str(path), "--url", comfyui.url], capture_output=True, text=True)
    assert r.returncode == 1 and "unknown workflow format" in r.stderr
    r = subprocess.run([*cli, "snapshot", "--url", comfyui.url], capture_output=True, text=True)
    assert r.returncode == 0 and "sm_test_pack: https://example.invalid/sm_test_pack.git @" in r.stdout
