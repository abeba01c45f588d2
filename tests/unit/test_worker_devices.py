"""How many ComfyUIs the worker starts and on which device (worker/devices.py), from what the machine
shows: CUDA_VISIBLE_DEVICES, nvidia-smi -L, the driver's list, or the worker's own settings."""

from __future__ import annotations

import subprocess

import pytest
from comfyui_sagemaker.worker import devices
from comfyui_sagemaker.worker.devices import Device, DevicesInvalid, plan

SMI_4 = "\n".join(f"GPU {i}: NVIDIA A10G (UUID: GPU-{i}abc)" for i in range(4)) + "\n"


def smi(output: str | None):
    def run(cmd, **kwargs):
        if output is None:
            raise FileNotFoundError(cmd[0])
        return subprocess.CompletedProcess(cmd, 0, output, "")
    return run


@pytest.fixture
def smi_present(monkeypatch):
    monkeypatch.setattr(devices.shutil, "which", lambda name: "/usr/bin/nvidia-smi")


def labels(found: list[Device]) -> list[str]:
    return [d.label for d in found]


def test_one_comfyui_per_gpu_that_nvidia_smi_lists(smi_present, tmp_path):
    found = plan({}, [], cpu_count=48, run=smi(SMI_4), proc=tmp_path / "none")
    assert labels(found) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert [d.env()["CUDA_VISIBLE_DEVICES"] for d in found] == ["0", "1", "2", "3"]


def test_cuda_visible_devices_wins_and_hides_what_it_does_not_list(smi_present, tmp_path):
    found = plan({"CUDA_VISIBLE_DEVICES": "2,GPU-xyz"}, [], run=smi(SMI_4), proc=tmp_path)
    assert [d.cuda_id for d in found] == ["2", "GPU-xyz"]
    # Empty, or -1, hides every GPU: one ComfyUI on the CPU.
    for hidden in ("", "-1", "-1,0"):
        assert labels(plan({"CUDA_VISIBLE_DEVICES": hidden}, [], run=smi(SMI_4), proc=tmp_path)) == ["cpu"]


def test_without_nvidia_smi_the_drivers_list_counts_and_without_either_one_on_the_cpu(monkeypatch, tmp_path):
    monkeypatch.setattr(devices.shutil, "which", lambda name: None)
    for i in range(2):
        (tmp_path / f"0000:00:1{i}.0").mkdir()
    assert labels(plan({}, [], proc=tmp_path)) == ["cuda:0", "cuda:1"]
    assert labels(plan({}, [], proc=tmp_path / "missing")) == ["cpu"]


def test_comfyui_arguments_pin_the_device(smi_present, tmp_path):
    assert labels(plan({}, ["--cpu"], run=smi(SMI_4), proc=tmp_path)) == ["cpu"]
    pinned = plan({}, ["--cuda-device", "3", "--lowvram"], run=smi(SMI_4), proc=tmp_path)
    assert labels(pinned) == ["cuda:3"]
    # The environment says which GPU; the flag would make ComfyUI set it again.
    assert pinned[0].args(["--cuda-device", "3", "--lowvram"]) == ["--lowvram"]
    assert Device("cpu").args(["--lowvram"]) == ["--lowvram", "--cpu"]


def test_a_count_takes_the_first_gpus_or_goes_round_robin_or_splits_the_cpu(smi_present, tmp_path):
    assert labels(plan({"WORKER_COMFYUI_COUNT": "2"}, [], run=smi(SMI_4), proc=tmp_path)) == ["cuda:0", "cuda:1"]
    assert labels(plan({"WORKER_COMFYUI_COUNT": "6"}, [], run=smi(SMI_4), proc=tmp_path)) == \
        ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    three = plan({"WORKER_COMFYUI_COUNT": "3"}, ["--cpu"], cpu_count=8)
    assert labels(three) == ["cpu"] * 3 and {d.threads for d in three} == {2}
    assert {d.env().get("OMP_NUM_THREADS") for d in three} == {"2"}
    assert plan({}, ["--cpu"], cpu_count=8)[0].threads is None  # alone: torch's own default


def test_explicit_devices_and_what_is_refused(tmp_path):
    assert labels(plan({"WORKER_DEVICES": "1, cpu"}, [], proc=tmp_path)) == ["cuda:1", "cpu"]
    for env in ({"WORKER_COMFYUI_COUNT": "0"}, {"WORKER_COMFYUI_COUNT": "many"}, {"WORKER_COMFYUI_COUNT": "65"},
                {"WORKER_DEVICES": "0;rm -rf"}):
        with pytest.raises(DevicesInvalid):
            plan(env, ["--cpu"])
