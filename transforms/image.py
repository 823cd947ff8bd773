"""Image transforms: resize with padding (aspect kept, black bars, as openpi's resize_with_pad). The JPEG
codec and its caps (decode any mode to RGB by rule, refuse decompression bombs) are schemas/image_codec.py's,
re-exported here for the readers and the trainer."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from vlamix.schemas.embodiment import CAMERA_SLOTS
from vlamix.schemas.frame import image_column
from vlamix.schemas.image_codec import (
    IMAGE_SIZE,
    JPEG_QUALITY,
    MAX_IMAGE_PIXELS,
    ImageDecodeError,
    Shrunk,
    black_jpeg,
    check_pixels,
    decode_jpeg,
    decode_jpeg_into,
    decode_jpeg_shrunk,
    encode_jpeg,
    fit_size,
    to_rgb,
)
from vlamix.stage_clock import stage

__all__ = [
    "IMAGE_SIZE",
    "JPEG_QUALITY",
    "MAX_IMAGE_PIXELS",
    "EncodeCameras",
    "ImageDecodeError",
    "ResizeWithPad",
    "Shrunk",
    "black_jpeg",
    "check_pixels",
    "decode_jpeg",
    "decode_jpeg_into",
    "decode_jpeg_shrunk",
    "encode_jpeg",
    "fit_size",
    "to_rgb",
]


@dataclass(frozen=True)
class ResizeWithPad:
    """HxWx3 uint8 -> size x size x 3, scaled to fit and centred on black. Its inverse is `unpad`. A
    `Shrunk` image (decoded at a reduced scale) is placed by its native size and resized from its pixels."""

    size: int = IMAGE_SIZE

    def geometry(self, height: int, width: int) -> tuple[float, int, int, int, int]:
        """(scale, new_h, new_w, top, left) for an image of this size."""
        scale = min(self.size / height, self.size / width)
        new_h, new_w = fit_size(height, width, self.size)
        return scale, new_h, new_w, (self.size - new_h) // 2, (self.size - new_w) // 2

    def __call__(self, image: np.ndarray | Shrunk) -> np.ndarray:
        if isinstance(image, Shrunk):
            (h, w), pixels, (span_h, span_w) = (image.height, image.width), image.pixels, image.extent()
        else:
            (h, w), pixels = image.shape[:2], image
            span_h, span_w = float(h), float(w)
        _, new_h, new_w, top, left = self.geometry(h, w)
        out = np.zeros((self.size, self.size, 3), dtype=np.uint8)
        if pixels.shape[:2] == (new_h, new_w):  # the decoder already scaled it (video), or it fits
            out[top : top + new_h, left : left + new_w] = pixels
        else:
            box = (0.0, 0.0, span_w, span_h)  # the whole picture; a DCT-scaled one's last pixel is partial
            resized = Image.fromarray(pixels).resize((new_w, new_h), Image.Resampling.BILINEAR, box=box)
            out[top : top + new_h, left : left + new_w] = np.asarray(resized)
        return out

    def unpad(self, image: np.ndarray, height: int, width: int) -> np.ndarray:
        """Crop the bars away and scale back to the original size (lossy: resampling)."""
        _, new_h, new_w, top, left = self.geometry(height, width)
        crop = image[top : top + new_h, left : left + new_w]
        return np.asarray(Image.fromarray(crop).resize((width, height), Image.Resampling.BILINEAR))


@dataclass(frozen=True)
class EncodeCameras:
    """A frame row as a reader gives it (each camera column a native HxWx3 uint8 array, a `Shrunk` one, or
    None) -> the
    FRAME record's form: each image resized with padding to size x size and JPEG-encoded. Run by the
    extract step on every row, before the frame Parquet is written. No inverse: JPEG is lossy, and
    `ResizeWithPad.unpad` undoes the geometry."""

    resize: ResizeWithPad = field(default_factory=ResizeWithPad)

    def __call__(self, row: dict) -> dict:
        out = dict(row)
        for slot in CAMERA_SLOTS:
            image = row[image_column(slot)]
            if image is not None:
                with stage("resize"):
                    image = self.resize(image)
                with stage("encode"):
                    image = encode_jpeg(image)
            out[image_column(slot)] = image
        return out
