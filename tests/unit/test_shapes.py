"""Shapes checked where they come in (core/shapes.py): a record or a wire message of the wrong shape is refused
with a reason in a few words, one of the right shape is handed on unchanged (fields of a newer version kept),
and the worker's wire says its protocol version, which each side checks in one place. Also run on the lowest
pydantic allowed (marked floor)."""

from __future__ import annotations

import json

import pytest
from comfyui_sagemaker.core.environments import read_manifest
from comfyui_sagemaker.core.execution_records import parse_record
from comfyui_sagemaker.core.records import ExecutionRecord, ManifestContent
from comfyui_sagemaker.core.shapes import ShapeInvalid, validate
from comfyui_sagemaker.core.unreadable import Unreadable
from comfyui_sagemaker.core.worker_contract import (
    PROTOCOL_VERSION,
    ProtocolUnsupported,
    read_progress,
    read_result,
    read_stream,
    refusal,
    speaks,
)

pytestmark = pytest.mark.floor

RECORD = {"id": "20260101T000000000000-0a1b2c3d", "state": "queued", "template": None, "inputs": {"a.png": "0" * 64},
          "owner": {"instance": "i", "name": "Ada", "user": None}, "error": None}


def test_a_record_of_its_shape_is_handed_on_as_it_is_with_fields_it_does_not_know():
    newer = {**RECORD, "from_a_newer_version": {"kept": True}}
    assert validate(ExecutionRecord, newer) is newer
    assert parse_record(json.dumps(newer).encode(), "k", RECORD["id"]) == newer


def test_a_record_with_nulls_where_nothing_was_known_yet_is_read():
    # A record that never reached an endpoint names none: listed as it is, never hidden as unreadable.
    blank = {**RECORD, "prompt_id": "p", "template_version": None, "environment": None, "environment_version": None,
             "endpoint": None, "client_id": None, "started_at": None, "finished_at": None, "outputs": None,
             "timings": None, "note": None, "follower": None}
    assert parse_record(json.dumps(blank).encode(), "k") == blank


@pytest.mark.parametrize("change, reason", [
    ({"state": "paused"}, "state must be 'queued', 'running', 'succeeded', 'failed' or 'cancelled'"),
    ({"id": 5}, "id must be a string"),
    ({"inputs": {"a.png": 5}}, "inputs.a.png must be a string"),
    ({"owner": {"name": "Ada"}}, "owner has no instance"),
    ({"error": {"message": "no code"}}, "error has no code"),
    ({"template_version": True}, "template_version must be a whole number"),
])
def test_a_record_of_another_shape_is_unreadable_saying_where(change, reason):
    with pytest.raises(Unreadable) as err:
        parse_record(json.dumps({**RECORD, **change}).encode(), "executions/k.json")
    assert err.value.reason == reason and err.value.key == "executions/k.json"


def test_what_is_no_record_at_all_is_unreadable():
    with pytest.raises(Unreadable, match="it has no state"):
        parse_record(json.dumps({"id": RECORD["id"]}).encode(), "k")
    with pytest.raises(Unreadable, match="a JSON list, not an object"):
        parse_record(b"[1]", "k")


def test_a_manifest_is_read_as_its_environment_and_version_or_not_at_all():
    manifest = {"name": "Portraits", "version": 2, "custom_nodes": [], "models": [], "endpoint": None}
    assert read_manifest(json.dumps(manifest).encode(), "k", "portraits", 2) == manifest
    for other, reason in (({"version": 3}, "it is not version 2"),
                          ({"name": "Other"}, "it is not a manifest of environment portraits"),
                          ({"models": [{"folder": "checkpoints", "name": "a"}]}, "models[0] has no sha256"),
                          ({"endpoint": {"kind": "cloud"}}, "endpoint.kind must be 'local' or 'sagemaker'")):
        with pytest.raises(Unreadable) as err:
            read_manifest(json.dumps({**manifest, **other}).encode(), "k", "portraits", 2)
        assert err.value.reason == reason
    # The worker needs less: what it materialises.
    assert validate(ManifestContent, {"custom_nodes": [], "models": []}) == {"custom_nodes": [], "models": []}
    with pytest.raises(ShapeInvalid, match=r"custom_nodes\[0\] has no archive"):
        validate(ManifestContent, {"custom_nodes": [{"folder": "p"}], "models": []})


def test_each_side_understands_its_own_protocol_and_the_earlier_one():
    speaks(None, "the caller")  # a peer from before the field
    for version in range(PROTOCOL_VERSION + 1):
        speaks(version, "the caller")
    for newer in (PROTOCOL_VERSION + 1, "1", True, -1):
        with pytest.raises(ProtocolUnsupported, match="update the extension and the worker image"):
            speaks(newer, "the endpoint's worker")


def test_a_result_and_a_stream_are_read_by_the_protocol():
    result = {"protocol_version": PROTOCOL_VERSION, "status": "succeeded", "outputs": {}}
    assert read_result(result) is result
    assert read_result({"status": "failed", "error": {"code": "timeout"}})["status"] == "failed"  # protocol 0
    with pytest.raises(ProtocolUnsupported):
        read_result({**result, "protocol_version": PROTOCOL_VERSION + 1})
    with pytest.raises(ShapeInvalid, match="status must be 'succeeded' or 'failed'"):
        read_result({"status": "done"})
    events: list = []
    lines = [b'{"type": "executing", "data": {"node": "1"}}', b"", b'{"type": "result", "data": '
             + json.dumps(result).encode() + b"}", b'{"type": "after"}']
    assert read_stream(lines, events.append) == result and events == [{"type": "executing", "data": {"node": "1"}}]
    assert read_stream([b'{"type": "executing"}'], events.append) is None
    with pytest.raises(ShapeInvalid, match="data must be an object"):
        read_stream([b'{"type": "executing", "data": 5}'], events.append)


@pytest.mark.parametrize("outputs", ["nonsense", {"2": "images"}, {"2": ["x"]}])
def test_outputs_of_any_shape_cross_the_wire_and_fail_the_run_as_bad_output(tmp_path, outputs):
    # One place for the outputs' shape (core/execution_outputs.py): a result whose outputs are not
    # {node: {kind: [items]}} is a run that failed with bad_output, not a worker that broke the protocol.
    from comfyui_sagemaker.core.execution_outputs import OutputInvalid, Outputs
    from comfyui_sagemaker.local.folder_store import FolderStore

    result = read_result({"status": "succeeded", "outputs": outputs})
    with pytest.raises(OutputInvalid) as err:
        Outputs(FolderStore(tmp_path), lambda: tmp_path).all("run", result.get("outputs"))
    assert err.value.code == "bad_output"


def test_an_async_runs_progress_of_either_protocol():
    assert read_progress([{"type": "execution_start"}]) == {"events": [{"type": "execution_start"}]}  # protocol 0
    progress = {"protocol_version": PROTOCOL_VERSION, "events": [], "preview": None, "preview_seq": 0}
    assert read_progress(progress) is progress
    with pytest.raises(ShapeInvalid, match="preview_seq must be a whole number"):
        read_progress({"events": [], "preview_seq": "3"})


def test_a_workers_refusal_in_its_words_or_its_status():
    assert refusal(b'{"error": {"code": "input_missing", "message": "x.png"}}', 400) == {
        "code": "input_missing", "message": "x.png"}
    assert refusal(b"<html>bad gateway</html>", 502) == {"code": "worker_error", "message": "worker answered 502"}
    assert refusal(b"[1, 2]", 500) == {"code": "worker_error", "message": "worker answered 500"}
