"""API-format prompts the tests run: they need the test pack (tests/fixtures/sm_test_pack), no model weights."""

from __future__ import annotations


def scale_prompt(image: str, factor: float = 0.5, prefix: str = "sm", wait_for: str | None = None,
                 timeout: float = 120) -> dict:
    """LoadImage -> SMTestScale(factor) -> SaveImage; with `wait_for`, an SMTestWait holds the run open
    until that file exists (or `timeout` s pass)."""
    p = {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "SMTestScale", "inputs": {"image": ["1", 0], "lora_name": "style.safetensors",
                                                        "factor": factor}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }
    if wait_for:
        p["4"] = {"class_type": "SMTestWait", "inputs": {"image": ["2", 0], "signal": wait_for, "timeout": timeout}}
        p["3"]["inputs"]["images"] = ["4", 0]
    return p
