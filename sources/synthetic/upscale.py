"""Upscale a rendered frame to a camera's size (bilinear), so that benchmarks can feed the readers frames
as large as real robot cameras give (480x640) from the cheap small renders of the bundled samples."""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["Size", "upscaled"]

Size = tuple[int, int]  # (height, width)


def upscaled(image: np.ndarray, size: Size | None) -> np.ndarray:
    """`image` (HxWx3 uint8) resized to `size` (height, width) when given and different; else itself."""
    if size is None or image.shape[:2] == tuple(size):
        return image
    height, width = size
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
