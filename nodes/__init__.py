"""The extension's ComfyUI nodes: template parameters and the template output (S3 image I/O comes later)."""

from .parameters import CLASSES, DISPLAY_NAMES

NODE_CLASS_MAPPINGS: dict = dict(CLASSES)
NODE_DISPLAY_NAME_MAPPINGS: dict = dict(DISPLAY_NAMES)
