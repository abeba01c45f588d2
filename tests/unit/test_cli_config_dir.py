"""`config` from the CLI finds the configuration of the ComfyUI it is called in, also through a symlinked folder
(the dev environment's `.dev/base/custom_nodes/comfyui-sagemaker` points at the checkout): issue 32, point 7."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_config_through_a_symlinked_custom_nodes_folder_reads_that_comfyuis_configuration(tmp_path):
    comfy = tmp_path / "base"
    (comfy / "custom_nodes").mkdir(parents=True)
    link = comfy / "custom_nodes" / "comfyui-sagemaker"
    link.symlink_to(ROOT, target_is_directory=True)
    config_dir = comfy / "user" / "__sagemaker"
    config_dir.mkdir(parents=True)
    (config_dir / "config.json").write_text(json.dumps({"display_name": "Designer Dana"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYUI_SAGEMAKER_")}
    env.pop("PYTHONPATH", None)  # as a user calls it: the folder is the package
    out = subprocess.run([sys.executable, "custom_nodes/comfyui-sagemaker", "config"], cwd=comfy, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["config_dir"] == str(config_dir)
    assert shown["display_name"] == "Designer Dana"
