"""What an image cell of a record holds and how it reads: JPEG bytes (224x224 in samples, an absent camera
as `black_jpeg`), decoded to RGB uint8 by the rules below. Here, below transforms/, because the record
checks of schemas/expectations.py decode images too; transforms/image.py resizes and re-exports these.

Decoding is capped: an image whose header claims more than MAX_IMAGE_PIXELS is refused before a pixel is
decoded (a few bytes of JPEG or PNG can claim 30000x30000, a 2.7 GB decode: a decompression bomb), and a
PNG's compressed text chunks may inflate to MAX_TEXT_CHUNK bytes each, MAX_TEXT_MEMORY in all.

Every mode becomes RGB uint8 by a written rule (`to_rgb`):
- 8-bit modes (RGB, L, 1, P, CMYK, YCbCr): Pillow's conversion. CMYK is converted without its ICC profile.
- 16-bit samples (I;16, I;16B, I;16L, and mode I, which is taken as 16-bit: what PNG and TIFF decode to)
  are scaled to their high byte (v >> 8, as Pillow itself reads 48-bit RGB PNGs), never clipped at 255;
  mode I values outside 0..65535 are refused.
- Float (F) samples are taken as 0..1 and scaled; values outside [0, 1] (or not finite) are refused.
- Transparency (RGBA, LA, PA, a palette's or a PNG's transparent colour) is composited on WHITE, as a
  browser shows a web image on a page: a transparent background is white, and its hidden colour (often
  black) never shows.
- Other modes (LAB, ...) are refused.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import simplejpeg
from PIL import Image, PngImagePlugin, UnidentifiedImageError

__all__ = [
    "IMAGE_SIZE",
    "JPEG_QUALITY",
    "MAX_IMAGE_PIXELS",
    "CameraImage",
    "ImageDecodeError",
    "Shrunk",
    "black_jpeg",
    "check_pixels",
    "decode_camera",
    "decode_jpeg",
    "decode_jpeg_into",
    "decode_jpeg_shrunk",
    "encode_jpeg",
    "fit_size",
    "jpeg_is_whole",
    "pixels_of",
    "to_rgb",
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
        f"{what}, above the cap of {MAX_IMAGE_PIXELS / 1e6:.0f} MP (schemas/image_codec.py MAX_IMAGE_PIXELS): "
        "a decompression bomb or a mislabelled file; re-encode it smaller"
    )


def check_pixels(width: int, height: int, what: str = "image") -> None:
    """Refuse a `width` x `height` image (or video frame) above MAX_IMAGE_PIXELS, before decoding it."""
    if width * height > MAX_IMAGE_PIXELS:
        raise _too_large(f"{what} of {width}x{height} pixels ({width * height / 1e6:.1f} MP)")


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """HxWx3 uint8 RGB -> baseline JPEG, 4:2:0 chroma (what Pillow writes at this quality), with
    libjpeg-turbo through simplejpeg: about 1.4x Pillow's speed on 224x224 frames, same library."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"encode_jpeg takes HxWx3 uint8 RGB, got shape {image.shape} of {image.dtype}")
    return simplejpeg.encode_jpeg(
        np.ascontiguousarray(image), quality=quality, colorspace="RGB", colorsubsampling="420"
    )


def fit_size(height: int, width: int, box: int) -> tuple[int, int]:
    """(height, width) of a height x width image scaled to fit a box x box square, aspect kept: the size
    transforms/image.py ResizeWithPad resizes to before it pads."""
    scale = min(box / height, box / width)
    return max(1, round(height * scale)), max(1, round(width * scale))


@dataclass(frozen=True)
class Shrunk:
    """An image decoded smaller than its native `height` x `width`, but never smaller than what fitting it
    into the box asked for needs (`fit_size`): libjpeg's DCT scaling (1/8 steps) or the video scaler did
    the first part of the downscale while decoding. ResizeWithPad takes the geometry from the native size
    and resizes `pixels` the rest of the way; the pixels stay within the tolerance
    tests/transforms/test_shrunk_decode.py states of a full decode then resize."""

    pixels: np.ndarray  # h x w x 3 uint8, h <= height, w <= width
    height: int
    width: int
    # pixels per native pixel: libjpeg scales by n/8 and rounds the size up, so the last row and column
    # of `pixels` may be partial (641 wide at 3/8 is 240.375 pixels, stored as 241); the resize maps
    # exactly height*scale x width*scale of them, or the picture would stretch by up to a pixel
    scale: float = 1.0

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> Shrunk:
        """The same image with `fn` applied to its pixels (a channel flip, ...)."""
        return Shrunk(fn(self.pixels), self.height, self.width, self.scale)

    def extent(self) -> tuple[float, float]:
        """(height, width) in `pixels` that the native image spans."""
        if self.pixels.shape[:2] == (self.height, self.width):
            return float(self.height), float(self.width)
        return self.height * self.scale, self.width * self.scale


CameraImage = np.ndarray | Shrunk  # what a reader gives for one camera of one frame


def pixels_of(image: CameraImage) -> np.ndarray:
    """The decoded pixels of a camera image, whatever size they were decoded at."""
    return image.pixels if isinstance(image, Shrunk) else image


_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")
_PILLOW_RGB = ("RGB", "L", "1", "P", "CMYK", "YCbCr")


def _scaled(values: np.ndarray, top: float, mode: str) -> np.ndarray:
    """Grey samples in 0..top (65535 or 1.0) as RGB 0..255; values outside that range are refused."""
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if not (np.isfinite(low) and np.isfinite(high) and low >= 0 and high <= top):
        raise ImageDecodeError(
            f"mode {mode} image with values in [{low:g}, {high:g}], outside 0..{top:g}: re-export it as 8- or "
            "16-bit"
        )
    if values.dtype.kind in "iu":  # 16-bit: the high byte, as Pillow reads a 48-bit RGB PNG
        grey = (values.astype(np.uint32) >> 8).astype(np.uint8)
    else:
        grey = np.floor(values.astype(np.float32) * np.float32(255.0 / top) + 0.5).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _on_white(rgba: np.ndarray) -> np.ndarray:
    """Alpha-composite on white, rounded; rgb * a + 255 * (255 - a) <= 65025 fits uint16."""
    alpha = rgba[:, :, 3:].astype(np.uint16)
    rgb = rgba[:, :, :3].astype(np.uint16)
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def to_rgb(im: Image.Image) -> np.ndarray:
    """An opened image as HxWx3 uint8 RGB, by the rules of this module's docstring."""
    mode = im.mode
    if mode in _SIXTEEN_BIT:
        return _scaled(np.asarray(im), 65535.0, mode)
    if mode == "F":
        return _scaled(np.asarray(im), 1.0, mode)
    if mode in _ALPHA or "transparency" in im.info:
        return _on_white(np.asarray(im.convert("RGBA")))
    if mode not in _PILLOW_RGB:
        raise ImageDecodeError(f"image mode {mode} has no rule to become RGB: re-export it as RGB")
    return np.asarray(im if mode == "RGB" else im.convert("RGB"))


def decode_jpeg(data: bytes) -> np.ndarray:
    """Decode JPEG (or any format PIL knows, in any mode: see `to_rgb`) bytes to HxWx3 uint8 RGB. Raises ImageDecodeError for bytes
    that do not decode or an image above the pixel cap (checked from the header, before decoding)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            check_pixels(*im.size)  # from the header: nothing is decoded yet
            return to_rgb(im)
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


def _dct_scale(shape: tuple[int, ...], height: int, width: int) -> float:
    """The n/8 that libjpeg decoded a height x width JPEG at, from the size it gave (ceil of each side)."""
    for n in range(1, 17):
        if shape == (-(-height * n // 8), -(-width * n // 8)):
            return n / 8
    raise ImageDecodeError(f"a {width}x{height} JPEG decoded to {shape[1]}x{shape[0]}, at no scale n/8")


def decode_jpeg_shrunk(data: bytes, box: int) -> Shrunk:
    """Decode JPEG bytes at the smallest of libjpeg's scales (n/8) that is still no smaller than the image
    fitted into a box x box square: a 640x480 frame for 224 decodes at 3/8, 240x180, about half the time
    of a full decode, and its resize costs a third. Bytes simplejpeg refuses (not a JPEG, CMYK, damaged)
    take `decode_jpeg`'s full decode (the same errors, the same rules for every mode)."""
    try:
        height, width = simplejpeg.decode_jpeg_header(data)[:2]
    except (ValueError, TypeError):
        height = width = 0
    if height and width:
        check_pixels(width, height)  # from the header: nothing is decoded yet
        min_h, min_w = fit_size(height, width, box)
        if min_h >= height or min_w >= width:  # no smaller than the frame: never scaled up by the DCT
            min_h = min_w = 0
        try:
            pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=min_h, min_width=min_w)
            return Shrunk(pixels, height, width, _dct_scale(pixels.shape[:2], height, width))
        except (ValueError, TypeError):
            pass  # Pillow's path below names the problem, or decodes what libjpeg alone cannot
    image = decode_jpeg(data)
    return Shrunk(image, image.shape[0], image.shape[1])


def decode_camera(data: bytes, box: int | None) -> CameraImage:
    """A reader's decode of one camera frame: full size (`decode_jpeg`) without a box, else `Shrunk` for
    a box x box square (`decode_jpeg_shrunk`)."""
    return decode_jpeg(data) if box is None else decode_jpeg_shrunk(data, box)


def jpeg_is_whole(data: bytes, height: int, width: int) -> bool:
    """Whether `data` is a whole colour JPEG of height x width, by its structure alone (no pixel decoded):
    a header libjpeg parses, saying that size and 3 components, and the end-of-image marker last (a
    truncated file has none). The build's sample gate checks the images the extract step just encoded this
    way: re-decoding each would cost as much as encoding it."""
    try:
        h, w, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except (ValueError, TypeError):
        return False
    return (h, w) == (height, width) and colorspace == "YCbCr" and bytes(data[-2:]) == b"\xff\xd9"


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
