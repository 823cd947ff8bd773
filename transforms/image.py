"""Image transforms: resize with padding (aspect kept, black bars, as openpi's resize_with_pad) and JPEG."""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

__all__ = ["IMAGE_SIZE", "JPEG_QUALITY", "ResizeWithPad", "black_jpeg", "decode_jpeg", "encode_jpeg"]

IMAGE_SIZE = 224
JPEG_QUALITY = 90


@dataclass(frozen=True)
class ResizeWithPad:
    """HxWx3 uint8 -> size x size x 3, scaled to fit and centred on black. Its inverse is `unpad`."""

    size: int = IMAGE_SIZE

    def geometry(self, height: int, width: int) -> tuple[float, int, int, int, int]:
        """(scale, new_h, new_w, top, left) for an image of this size."""
        scale = min(self.size / height, self.size / width)
        new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
        return scale, new_h, new_w, (self.size - new_h) // 2, (self.size - new_w) // 2

    def __call__(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        _, new_h, new_w, top, left = self.geometry(h, w)
        resized = Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR)
        out = np.zeros((self.size, self.size, 3), dtype=np.uint8)
        out[top : top + new_h, left : left + new_w] = np.asarray(resized)
        return out

    def unpad(self, image: np.ndarray, height: int, width: int) -> np.ndarray:
        """Crop the bars away and scale back to the original size (lossy: resampling)."""
        _, new_h, new_w, top, left = self.geometry(height, width)
        crop = image[top : top + new_h, left : left + new_w]
        return np.asarray(Image.fromarray(crop).resize((width, height), Image.Resampling.BILINEAR))


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    """Decode JPEG (or any format PIL knows) bytes to HxWx3 uint8 RGB."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


@cache
def black_jpeg(size: int = IMAGE_SIZE) -> bytes:
    """The stand-in for an absent camera (its presence mask is false)."""
    return encode_jpeg(np.zeros((size, size, 3), dtype=np.uint8))
