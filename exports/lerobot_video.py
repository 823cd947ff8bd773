"""One mp4 per camera per data file, written with PyAV: the frames as the layout holds them (224x224, padded),
at the dataset's control rate, yuv420p, one encoder thread (the bytes do not depend on the machine).

A frame's presentation time is its index in the file over the rate (time base 1/fps), so an episode that
starts at frame `k` of a file starts at `k / fps` seconds: the `from_timestamp` LeRobot seeks to.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["CODECS", "VideoWriter"]


@dataclass(frozen=True)
class Codec:
    name: str  # what info.json's `video.codec` says
    encoder: str  # FFmpeg's encoder, through PyAV
    options: dict[str, str]


# crf: h264 23 is x264's default; SVT-AV1 30 keeps 224x224 frames within the stated tolerance (README, Export)
CODECS = {
    "h264": Codec("h264", "libx264", {"crf": "23", "preset": "veryfast", "threads": "1"}),
    "av1": Codec("av1", "libsvtav1", {"crf": "30", "preset": "8", "svtav1-params": "lp=1"}),
}


class VideoWriter:
    """Frames in, one mp4 out; `close` flushes the encoder. Not reusable."""

    def __init__(self, path: Path, fps: int, codec: str, height: int, width: int):
        if codec not in CODECS:
            raise ValueError(f"video codec {codec!r}: choose one of {', '.join(CODECS)}")
        c = CODECS[codec]
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.frames = path, 0
        self.container = av.open(str(path), "w", format="mp4")
        self.container.metadata["encoder"] = "vlamix"  # not the library's version: the bytes stay put
        self.stream = self.container.add_stream(c.encoder, rate=fps)
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.stream.time_base = Fraction(1, fps)
        self.stream.options = dict(c.options)
        self.stream.codec_context.thread_count = 1
        self.shape = (height, width, 3)

    def add(self, frame: np.ndarray) -> None:
        if frame.shape != self.shape or frame.dtype != np.uint8:
            raise ValueError(
                f"{self.path}: frame {self.frames} is {frame.dtype} {frame.shape}, the video {self.shape}"
            )
        vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
        vf.pts = self.frames
        for packet in self.stream.encode(vf):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
