"""ComfyUI-Manager runs this with ComfyUI's own Python after cloning the extension:
it installs requirements.txt (light runtime packages only) into that interpreter."""

import subprocess
import sys
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"


def main() -> int:
    cmd = [sys.executable, "-m", "pip", "install", "-r", str(REQUIREMENTS)]
    print(f"comfyui-sagemaker: installing {REQUIREMENTS.name} into {sys.executable}", flush=True)
    rc = subprocess.call(cmd)
    if rc == 0:
        print("comfyui-sagemaker: requirements installed (boto3, watchdog, requests); restart ComfyUI")
    else:
        print(f"comfyui-sagemaker: pip failed with exit code {rc}; run: {' '.join(cmd)}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
