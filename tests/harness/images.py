"""Small images made with Pillow for workflows that need no model files."""

from __future__ import annotations

import io

from PIL import Image


def png(width: int = 8, height: int = 6, color: tuple[int, int, int] = (10, 100, 200)) -> bytes:
    img = Image.new("RGB", (width, height), color)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def pixels(data: bytes) -> list[tuple[int, ...]]:
    raw = Image.open(io.BytesIO(data)).convert("RGB").tobytes()
    return [tuple(raw[i:i + 3]) for i in range(0, len(raw), 3)]


def invert_prompt(image_name: str, prefix: str = "inverted") -> dict:
    """LoadImage -> ImageInvert -> SaveImage, in ComfyUI's API format."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image_name}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }
