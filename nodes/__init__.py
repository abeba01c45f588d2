"""The extension's ComfyUI nodes (template parameters and S3 image I/O come in later issues)."""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
