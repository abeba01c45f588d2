"""S3 image nodes for pipelines: load an image from an `s3://` URI, save images under an `s3://` prefix.

They use boto3's own credential chain through aws/clients.py, in the configured
`region` (boto3's default when it is empty); the bucket need not be the store's.
Saved images are encrypted as the store's writes are (`s3_sse`, `s3_kms_key_id`):
a bucket policy that demands it is met, and one setting says how this ComfyUI writes to S3.
Each failure a user can meet is an exception class below whose message names
the URI and what to fix; ComfyUI shows it on the node.

boto3, torch, numpy, PIL and ComfyUI's modules are imported inside the
functions, so importing the extension stays light.
"""

from __future__ import annotations

import io
import re
import uuid
from pathlib import Path
from typing import Any

from ..core.errors import SageMakerError

CATEGORY = "SageMaker/S3"
URI = re.compile(r"s3://([A-Za-z0-9._-]+)(?:/(.*))?", re.DOTALL)
ACCESS_DENIED = {"AccessDenied", "403", "AllAccessDisabled", "AccountProblem"}
CREDENTIALS_REFUSED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
                       "TokenRefreshRequired"}
MISSING_OBJECT = {"NoSuchKey", "404", "NotFound"}


class S3ImageError(SageMakerError):
    """An S3 image node failed; the message names the URI and what to fix."""

    code = "s3_image_error"


class S3UriInvalid(S3ImageError):
    """The text is not an `s3://bucket/key` URI."""


class S3ObjectNotFound(S3ImageError):
    """No object at the URI."""


class S3BucketNotFound(S3ImageError):
    """The URI's bucket does not exist."""


class S3AccessDenied(S3ImageError):
    """The credentials may not read or write the URI (or were refused)."""


class S3NotAnImage(S3ImageError):
    """The object exists but Pillow cannot read it as an image."""


def parse_uri(uri: str, need_key: bool = True) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key); surrounding white space is ignored. With `need_key`
    the key must not be empty (an object); without it `s3://bucket` alone is accepted (a prefix)."""
    text = uri.strip() if isinstance(uri, str) else ""
    m = URI.fullmatch(text)
    if not m or (need_key and not m.group(2)):
        shape = "s3://bucket/key" if need_key else "s3://bucket/prefix/"
        raise S3UriInvalid(f"expected {shape}, got {uri!r}")
    return m.group(1), m.group(2) or ""


def s3_error(err: Exception, uri: str, region: str = "") -> S3ImageError:
    """A botocore failure on `uri` in the node's words (aws/errors.translate for the rest)."""
    from botocore.exceptions import ClientError

    from ..aws.errors import translate

    if isinstance(err, ClientError):
        e = err.response.get("Error", {})
        code, message = str(e.get("Code", "")), e.get("Message") or ""
        if code == "NoSuchBucket":
            bucket = parse_uri(uri, need_key=False)[0]
            return S3BucketNotFound(f"no bucket named {bucket!r} (for {uri}): check the URI and the region")
        if code in MISSING_OBJECT:
            return S3ObjectNotFound(f"no object at {uri}")
        if code in ACCESS_DENIED:
            return S3AccessDenied(f"access denied to {uri} (check the credentials' permissions)")
        if code in CREDENTIALS_REFUSED:
            return S3AccessDenied(f"AWS refused the credentials used for {uri} ({code}: {message}); "
                                  "check or refresh them")
    return S3ImageError(f"{uri}: {translate(err, region).message}")


def _settings():
    import folder_paths

    from ..core import config

    return config.load(Path(folder_paths.get_system_user_directory("sagemaker")))


def _region() -> str:
    return _settings().region


def _s3(region: str) -> Any:
    from ..aws import clients

    return clients.client("s3", region)


def _call(uri: str, region: str, fn, **kwargs) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(**kwargs)
    except (ClientError, BotoCoreError) as err:
        raise s3_error(err, uri, region) from None


def decode(data: bytes, uri: str) -> tuple[Any, Any]:
    """(IMAGE, MASK) exactly as ComfyUI's LoadImage makes them: RGB floats in 0..1 shaped
    [frames, H, W, 3], mask = 1 - alpha; every frame of the first frame's size (not for MPO)."""
    import node_helpers
    import numpy as np
    import torch
    from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

    images, masks = [], []
    try:
        img = node_helpers.pillow(lambda b: Image.open(io.BytesIO(b)), data)
        size = None
        for frame in ImageSequence.Iterator(img):
            frame = node_helpers.pillow(ImageOps.exif_transpose, frame)
            if frame.mode == "I":
                frame = frame.point(lambda v: v * (1 / 255))
            rgb = frame.convert("RGB")
            if size is None:
                size = rgb.size
            if rgb.size != size:
                continue
            images.append(torch.from_numpy(np.array(rgb).astype(np.float32) / 255.0)[None,])
            if "A" in frame.getbands():
                alpha = np.array(frame.getchannel("A")).astype(np.float32) / 255.0
                mask = 1.0 - torch.from_numpy(alpha)
            elif frame.mode == "P" and "transparency" in frame.info:
                alpha = np.array(frame.convert("RGBA").getchannel("A")).astype(np.float32) / 255.0
                mask = 1.0 - torch.from_numpy(alpha)
            else:
                mask = torch.zeros((64, 64), dtype=torch.float32, device="cpu")
            masks.append(mask.unsqueeze(0))
    except UnidentifiedImageError:
        raise S3NotAnImage(f"{uri} is not an image: no format Pillow reads ({len(data)} bytes)") from None
    except (OSError, ValueError, SyntaxError) as e:  # a truncated or corrupt image
        raise S3NotAnImage(f"{uri} is not an image: {e}") from None
    if not images:
        raise S3NotAnImage(f"{uri} is not an image: no frame")
    if len(images) > 1 and img.format != "MPO":
        return torch.cat(images, dim=0), torch.cat(masks, dim=0)
    return images[0], masks[0]


class SageMakerLoadImageS3:
    DESCRIPTION = ("Loads an image from S3 (s3://bucket/key) like Load Image: the RGB image and a mask from its "
                   "alpha channel; an animated image gives one image per frame. Uses boto3's credentials and the "
                   "extension's configured region.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK")
    OUTPUT_TOOLTIPS = ("The image (every frame of an animated image).", "1 where the image is transparent.")
    FUNCTION = "load"
    SEARCH_ALIASES = ["s3 image", "load from s3", "aws image"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "uri": ("STRING", {"default": "s3://bucket/path/image.png",
                               "tooltip": "The image's S3 URI: s3://bucket/key (PNG, JPEG, WebP, ... anything "
                                          "Pillow reads)."}),
        }}

    def load(self, uri: str):
        bucket, key = parse_uri(uri)
        uri = f"s3://{bucket}/{key}"
        region = _region()
        s3 = _s3(region)
        r = _call(uri, region, s3.get_object, Bucket=bucket, Key=key)
        try:
            data = r["Body"].read()
        finally:
            r["Body"].close()
        return decode(data, uri)

    @classmethod
    def IS_CHANGED(cls, uri: str | None = None):
        """The object's ETag (and version), so a new object under the same key runs again;
        NaN (never equal: run again) when it cannot be read, so the load reports why."""
        if uri is None:  # linked: ComfyUI passes constants only
            return float("nan")
        try:
            bucket, key = parse_uri(uri)
            region = _region()
            h = _call(uri, region, _s3(region).head_object, Bucket=bucket, Key=key)
            return f"{h.get('ETag', '')} {h.get('VersionId', '')} {h.get('LastModified', '')}"
        except Exception:
            return float("nan")

    @classmethod
    def VALIDATE_INPUTS(cls, uri: str | None = None):
        if uri is None:  # linked to another node's output: checked when the node runs
            return True
        try:
            parse_uri(uri)
        except S3UriInvalid as e:
            return str(e)
        return True


def encode_png(image: Any, prompt: dict | None, extra_pnginfo: dict | None) -> bytes:
    """One [H, W, C] image as PNG bytes, with the workflow in its metadata like Save Image."""
    import json

    import numpy as np
    from comfy.cli_args import args
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    img = Image.fromarray(np.clip(255.0 * image.cpu().numpy(), 0, 255).astype(np.uint8))
    metadata = None
    if not args.disable_metadata:
        metadata = PngInfo()
        if prompt is not None:
            metadata.add_text("prompt", json.dumps(prompt))
        for k, v in (extra_pnginfo or {}).items():
            metadata.add_text(k, json.dumps(v))
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=metadata, compress_level=4)
    return buf.getvalue()


class SageMakerSaveImageS3:
    DESCRIPTION = ("Saves images to S3 as PNG under an s3:// prefix, named <filename_prefix>_<run id>_<index>.png "
                   "(a new run id each time, so nothing is overwritten). Shows a preview on the canvas and lists "
                   "the written URIs; outputs them too (one per line). Uses boto3's credentials and the extension's "
                   "configured region.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("uris",)
    OUTPUT_TOOLTIPS = ("The written objects' s3:// URIs, one per line.",)
    FUNCTION = "save"
    OUTPUT_NODE = True
    SEARCH_ALIASES = ["s3 image", "save to s3", "aws image", "upload image"]

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "prefix": ("STRING", {"default": "s3://bucket/outputs/",
                                      "tooltip": "Where to write: s3://bucket/ or s3://bucket/some/folder/ "
                                                 "(a / is added at the end if missing)."}),
                "filename_prefix": ("STRING", {"default": "ComfyUI",
                                               "tooltip": "The start of each file's name; may hold / for "
                                                          "sub-folders."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def save(self, images, prefix: str, filename_prefix: str = "ComfyUI", prompt=None, extra_pnginfo=None):
        import os

        import folder_paths

        bucket, folder = parse_uri(prefix, need_key=False)
        if folder and not folder.endswith("/"):
            folder += "/"
        name = filename_prefix.strip().lstrip("/")
        name = f"{name}_" if name else ""
        from ..aws.s3_store import encryption_args

        settings = _settings()
        region = settings.region
        encryption = encryption_args(settings.s3_sse, settings.s3_kms_key_id)
        s3 = _s3(region)
        run = uuid.uuid4().hex[:12]
        temp_dir = folder_paths.get_temp_directory()
        os.makedirs(temp_dir, exist_ok=True)
        uris, previews = [], []
        for i, image in enumerate(images):
            key = f"{folder}{name}{run}_{i:05}.png"
            uri = f"s3://{bucket}/{key}"
            data = encode_png(image, prompt, extra_pnginfo)
            _call(uri, region, s3.put_object, Bucket=bucket, Key=key, Body=data, ContentType="image/png",
                  **encryption)
            uris.append(uri)
            preview = f"sagemaker_s3_{run}_{i:05}.png"
            with open(os.path.join(temp_dir, preview), "wb") as f:
                f.write(data)
            previews.append({"filename": preview, "subfolder": "", "type": "temp"})
        return {"ui": {"images": previews, "text": uris}, "result": ("\n".join(uris),)}


CLASSES: dict[str, type] = {
    "SageMakerLoadImageS3": SageMakerLoadImageS3,
    "SageMakerSaveImageS3": SageMakerSaveImageS3,
}
DISPLAY_NAMES: dict[str, str] = {
    "SageMakerLoadImageS3": "Load Image (S3)",
    "SageMakerSaveImageS3": "Save Image (S3)",
}
