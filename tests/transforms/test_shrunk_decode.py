"""Decoding at a reduced scale (schemas/image_codec.py decode_jpeg_shrunk: libjpeg's DCT scaling; the
LeRobot reader's video scaler) stays within a stated tolerance of the full path it replaced (decode at
full size, then ResizeWithPad), on frames of real camera size made from the bundled renders, and keeps
the geometry exact: the same fitted size, the same black bars.

Tolerance, in 8-bit levels over every pixel and channel of the padded 224x224 image:
- JPEG: mean |difference| <= 1.0, 99th percentile <= 4 (measured about 0.3 and 3-4 on 480x640 renders);
  a frame no larger than the box decodes at full size, the same pixels as before;
- video (AREA scaling while converting to RGB): mean <= 1.5, 99th percentile <= 6 (measured ~0.8, 4-5).
"""

from __future__ import annotations

import io

import av
import h5py
import numpy as np
import pytest
from conftest import SAMPLES
from PIL import Image

from vlamix.schemas.image_codec import ImageDecodeError, Shrunk, decode_jpeg, decode_jpeg_shrunk, fit_size
from vlamix.sources.lerobot import _rgb
from vlamix.sources.synthetic.upscale import upscaled
from vlamix.transforms.image import ResizeWithPad

RESIZE = ResizeWithPad()


def _renders(size: tuple[int, int], count: int = 12) -> list[np.ndarray]:
    """Bundled Mobile-ALOHA frames (160x120 renders) upscaled to `size`, as the benchmark's frames are."""
    with h5py.File(SAMPLES / "mobile_aloha" / "episode_0.hdf5") as f:
        cam = f["observations/images/cam_high"]
        step = max(1, len(cam) // count)
        return [upscaled(decode_jpeg(cam[i].tobytes()), size) for i in range(0, step * count, step)]


def _jpeg(image: np.ndarray, quality: int = 50) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _diff(old: list[np.ndarray], new: list[np.ndarray]) -> np.ndarray:
    return np.abs(np.stack(old).astype(np.int16) - np.stack(new).astype(np.int16))


def _bars_black(image: np.ndarray, height: int, width: int) -> bool:
    _, new_h, new_w, top, left = RESIZE.geometry(height, width)
    inside = np.zeros(image.shape[:2], bool)
    inside[top : top + new_h, left : left + new_w] = True
    return not image[~inside].any()


@pytest.mark.parametrize("size", [(480, 640), (481, 641), (333, 500), (720, 1280)])
def test_jpeg_shrunk_decode_is_within_tolerance_of_the_full_path(size):
    frames = [_jpeg(f) for f in _renders(size)]
    shrunk = [decode_jpeg_shrunk(b, RESIZE.size) for b in frames]
    for s in shrunk:  # smaller than the frame, never smaller than what the fit needs
        need = fit_size(*size, RESIZE.size)
        assert (s.height, s.width) == size
        assert need[0] <= s.pixels.shape[0] <= size[0] and need[1] <= s.pixels.shape[1] <= size[1]
    assert shrunk[0].pixels.shape[0] < size[0]  # it did shrink
    old = [RESIZE(decode_jpeg(b)) for b in frames]
    new = [RESIZE(s) for s in shrunk]
    assert all(_bars_black(n, *size) for n in new)
    d = _diff(old, new)
    assert d.mean() <= 1.0 and np.percentile(d, 99) <= 4, (d.mean(), np.percentile(d, 99))


def test_video_frames_scaled_while_converting_are_within_tolerance(tmp_path):
    path = tmp_path / "clip.mp4"
    frames = _renders((480, 640), 10)
    with av.open(str(path), "w") as box:
        stream = box.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        for f in frames:
            box.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        box.mux(stream.encode())
    old, new = [], []
    with av.open(str(path)) as box:
        for frame in box.decode(video=0):
            old.append(RESIZE(_rgb(frame, None)))
            small = _rgb(frame, RESIZE.size)
            assert isinstance(small, Shrunk) and small.pixels.shape[:2] == fit_size(480, 640, RESIZE.size)
            new.append(RESIZE(small))
    assert len(new) == len(frames) and all(_bars_black(n, 480, 640) for n in new)
    d = _diff(old, new)
    assert d.mean() <= 1.5 and np.percentile(d, 99) <= 6, (d.mean(), np.percentile(d, 99))


def test_a_frame_no_larger_than_the_box_decodes_at_full_size_as_before():
    for size in [(120, 160), (224, 224), (96, 96)]:
        data = _jpeg(_renders(size, 1)[0])
        s = decode_jpeg_shrunk(data, RESIZE.size)
        assert s.pixels.shape[:2] == size and np.array_equal(s.pixels, decode_jpeg(data))
        assert np.array_equal(RESIZE(s), RESIZE(decode_jpeg(data)))


def test_what_libjpeg_cannot_scale_takes_the_full_decode():
    image = _renders((120, 160), 1)[0]
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    s = decode_jpeg_shrunk(buf.getvalue(), RESIZE.size)
    assert (s.height, s.width) == (120, 160) and np.array_equal(s.pixels, image)
    with pytest.raises(ImageDecodeError):
        decode_jpeg_shrunk(b"\xff\xd8\xff not a jpeg at all", RESIZE.size)


def test_a_header_above_the_pixel_cap_is_refused_before_decoding():
    data = bytearray(_jpeg(np.zeros((16, 16, 3), np.uint8)))
    sof = data.index(b"\xff\xc0")  # baseline frame header: length(2) precision(1) height(2) width(2)
    data[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") + (30000).to_bytes(2, "big")
    with pytest.raises(ImageDecodeError, match="above the cap"):
        decode_jpeg_shrunk(bytes(data), RESIZE.size)
