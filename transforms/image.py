"""Image transforms: resize with padding (aspect kept, black bars, as openpi's resize_with_pad) and JPEG.

Decoding is capped: an image whose header claims more than MAX_IMAGE_PIXELS is refused before a pixel is
decoded (a few bytes of JPEG or PNG can claim 30000x30000, a 2.7 GB decode: a decompression bomb), and a
PNG's compressed text chunks may inflate to MAX_TEXT_CHUNK bytes each, MAX_TEXT_MEMORY in all.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from functools import cache

import numpy as np
import simplejpeg
from PIL import Image, PngImagePlugin, UnidentifiedImageError

__all__ = [
    "IMAGE_SIZE",
    "JPEG_QUALITY",
    "MAX_IMAGE_PIXELS",
    "ImageDecodeError",
    "ResizeWithPad",
    "black_jpeg",
    "check_pixels",
    "decode_jpeg",
    "decode_jpeg_into",
    "encode_jpeg",
]

IMAGE_SIZE = 224
JPEG_QUALITY = 90
# 50 MP: six times a 4K camera frame, above any robot camera or web photo we train on (all are resized to
# 224x224); its RGB decode is 150 MB.
MAX_IMAGE_PIXELS = 50_000_000
MAX_TEXT_CHUNK = 1 << 20  # one PNG text chunk, decompressed (Pillow's default, set here on purpose)
MAX_TEXT_MEMORY = 8 << 20  # all PNG text chunks of one image, decompressed

# Pillow raises DecompressionBombError in Image.open above twice its limit, and only warns between the
# two: half our cap makes its refusal our cap, wherever Pillow opens an image in this process.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS // 2
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # below our cap: a fine image
PngImagePlugin.MAX_TEXT_CHUNK = MAX_TEXT_CHUNK
PngImagePlugin.MAX_TEXT_MEMORY = MAX_TEXT_MEMORY


class ImageDecodeError(OSError):
    """Image bytes that do not decode, or whose header claims more pixels than the cap. An OSError, as
    Pillow's own decode failures are, so readers catch one class and quarantine the frame or item."""


def _too_large(what: str) -> ImageDecodeError:
    return ImageDecodeError(
        f"{what}, above the cap of {MAX_IMAGE_PIXELS / 1e6:.0f} MP (transforms/image.py MAX_IMAGE_PIXELS): "
        "a decompression bomb or a mislabelled file; re-encode it smaller"
    )


def check_pixels(width: int, height: int, what: str = "image") -> None:
    """Refuse a `width` x `height` image (or video frame) above MAX_IMAGE_PIXELS, before decoding it."""
    if width * height > MAX_IMAGE_PIXELS:
        raise _too_large(f"{what} of {width}x{height} pixels ({width * height / 1e6:.1f} MP)")


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
    """Decode JPEG (or any format PIL knows) bytes to HxWx3 uint8 RGB. Raises ImageDecodeError for bytes
    that do not decode or an image above the pixel cap (checked from the header, before decoding)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            check_pixels(*im.size)  # from the header: nothing is decoded yet
            return np.asarray(im.convert("RGB"))
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as e:  # Pillow's check in Image.open: the same cap, met first
        claimed = re.search(r"\((\d+) pixels\)", str(e))
        pixels = f"{int(claimed.group(1)):,} pixels" if claimed else "too many pixels"
        raise _too_large(f"image header claims {pixels}") from e
    except UnidentifiedImageError as e:  # its message holds a memory address: no two runs would agree
        raise ImageDecodeError(
            f"not an image format Pillow knows (bytes {bytes(data or b'')[:8]!r}...)"
        ) from e
    except (OSError, ValueError, TypeError, SyntaxError) as e:
        # SyntaxError: some Pillow plugins' malformed headers; ValueError: e.g. a PNG text chunk that
        # decompresses past MAX_TEXT_CHUNK; TypeError: bytes that are not bytes (a null cell)
        raise ImageDecodeError(f"{type(e).__name__}: {e}") from e


def decode_jpeg_into(data: bytes, out: np.ndarray) -> np.ndarray:
    """Decode a JPEG of exactly out's HxW into `out` (HxWx3 uint8, C-contiguous), with libjpeg-turbo
    straight into that memory (simplejpeg: the same pixels as Pillow, which wraps the same library, at
    about 3x the speed on 224x224 images). Bytes simplejpeg refuses (not a JPEG, CMYK, damaged) take
    `decode_jpeg`'s path, which decodes what Pillow can and raises ImageDecodeError otherwise; an image of
    another size is an ImageDecodeError (nothing is resized here)."""
    h, w = out.shape[:2]
    try:
        header = simplejpeg.decode_jpeg_header(data)[:2]
    except (ValueError, TypeError):
        header = None
    if header is not None and header == (h, w):
        try:
            return simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out)
        except (ValueError, TypeError):
            pass  # Pillow's path below names the problem
    image = decode_jpeg(data)
    if image.shape[:2] != (h, w):
        raise ImageDecodeError(f"image of {image.shape[1]}x{image.shape[0]} pixels, expected {w}x{h}")
    out[...] = image
    return out


@cache
def black_jpeg(size: int = IMAGE_SIZE) -> bytes:
    """The stand-in for an absent camera (its presence mask is false)."""
    return encode_jpeg(np.zeros((size, size, 3), dtype=np.uint8))
