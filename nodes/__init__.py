"""The extension's ComfyUI nodes: template parameters, the template output, and S3 image I/O."""

from . import s3_images
from .parameters import CLASSES, DISPLAY_NAMES

NODE_CLASS_MAPPINGS: dict = {**CLASSES, **s3_images.CLASSES}
NODE_DISPLAY_NAME_MAPPINGS: dict = {**DISPLAY_NAMES, **s3_images.DISPLAY_NAMES}
