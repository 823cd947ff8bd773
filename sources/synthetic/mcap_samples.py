"""The ROS 2 sample `ros2_sim`: the tabletop pick-and-place (sources/synthetic/tabletop.py) recorded as
ROS 2 bags in MCAP by mcap-ros2-support's writer, one bag per episode, the way a lab's robot logs it:
every topic at its own rate, none at the training rate.

- `/joint_states` sensor_msgs/msg/JointState at 50 Hz: 6 joints + `gripper` (0 open, 1 closed, as the
  arm6 sample's `gripper_position`), the follower's positions.
- `/joint_commands` sensor_msgs/msg/JointState at 15 Hz: the leader's joint targets + gripper command.
- `/camera/front/compressed` sensor_msgs/msg/CompressedImage (JPEG) and `/camera/wrist/image_raw`
  sensor_msgs/msg/Image (rgb8, raw) at 15 Hz, 64x64, each frame a few ms off its tick (seeded jitter).
- `/task` std_msgs/msg/String: the instruction, once at the start.

Message times (log_time, what vlamix aligns on) lag the header stamps (capture time) by a fixed 2 ms of
transport. All times are fixed nanosecond values from a fixed epoch: the same bytes on every run (the
writer's only other text is its library string, fixed by the pinned versions).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mcap.writer import CompressionType
from mcap_ros2.writer import Writer
from PIL import Image

from vlamix.sources.synthetic.kinematics import portable
from vlamix.sources.synthetic.tabletop import SIM_HZ, TabletopEpisode, render_tabletop, simulate_tabletop

__all__ = ["MSGDEFS", "BagMessage", "generate_mcap", "image_msg", "joint_state", "write_bag"]

_HEADER = """================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
"""
# ROS 2 message definitions as rosbag2 stores them (ros2msg: the type, then its dependencies)
MSGDEFS = {
    "sensor_msgs/msg/JointState": "std_msgs/Header header\nstring[] name\nfloat64[] position\n"
    "float64[] velocity\nfloat64[] effort\n" + _HEADER,
    "sensor_msgs/msg/CompressedImage": "std_msgs/Header header\nstring format\nuint8[] data\n" + _HEADER,
    "sensor_msgs/msg/Image": "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\n"
    "uint8 is_bigendian\nuint32 step\nuint8[] data\n" + _HEADER,
    "std_msgs/msg/String": "string data\n",
}
EPOCH_NS = 1_700_000_000 * 10**9  # 2023-11-14: a fixed recording date
EPISODE_SECONDS = 2.0
START_SECONDS = 0.5  # where in the simulated pick-and-place the recording starts (the arm is moving)
SIZE = 64
JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
TRANSPORT_NS = 2_000_000  # log_time - header stamp
JITTER_NS = 4_000_000  # cameras: up to +-4 ms off their tick
JPEG_QUALITY = 85


@dataclass(frozen=True)
class BagMessage:
    """One message to write: its topic, ROS 2 type (a key of MSGDEFS), log time (ns) and fields."""

    topic: str
    type: str
    log_time: int
    fields: dict


def write_bag(path: Path, messages: Iterable[BagMessage], chunk_size: int = 1 << 20) -> Path:
    """A ROS 2 bag as one MCAP file, messages in the order given (zstd chunks, CRCs, summary)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f, Writer(f, chunk_size=chunk_size, compression=CompressionType.ZSTD) as bag:
        schemas = {}
        for m in messages:
            if m.type not in schemas:
                schemas[m.type] = bag.register_msgdef(m.type, MSGDEFS[m.type])
            bag.write_message(
                m.topic, schemas[m.type], m.fields, log_time=m.log_time, publish_time=m.log_time
            )
    return path


def _header(stamp_ns: int, frame_id: str = "") -> dict:
    return {"stamp": {"sec": stamp_ns // 10**9, "nanosec": stamp_ns % 10**9}, "frame_id": frame_id}


def joint_state(stamp_ns: int, position: np.ndarray, names: tuple[str, ...] = JOINTS) -> dict:
    return {
        "header": _header(stamp_ns),
        "name": list(names),
        "position": [float(v) for v in position],
        "velocity": [],
        "effort": [],
    }


def image_msg(stamp_ns: int, pixels: np.ndarray, encoding: str = "rgb8", frame_id: str = "wrist") -> dict:
    """sensor_msgs/msg/Image of (H, W, C) uint8 pixels, row-major, `step` = W * C."""
    height, width = pixels.shape[:2]
    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    return {
        "header": _header(stamp_ns, frame_id),
        "height": height,
        "width": width,
        "encoding": encoding,
        "is_bigendian": 0,
        "step": width * channels,
        "data": np.ascontiguousarray(pixels, np.uint8).tobytes(),
    }


def _jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _ticks(hz: float, offset_s: float, jitter: np.ndarray | None = None) -> np.ndarray:
    """Capture times (ns after the recording starts) of a publisher ticking at `hz`."""
    n = int(np.floor((EPISODE_SECONDS - offset_s) * hz + 1e-9)) + 1
    t = np.round((offset_s + np.arange(n) / hz) * 1e9).astype(np.int64)
    return t if jitter is None else t + jitter[:n]


def _step(ep: TabletopEpisode, t_ns: int) -> int:
    """The simulation step (50 Hz) a capture at `t_ns` after the recording start sees."""
    return min(len(ep.t) - 1, round((START_SECONDS + t_ns / 1e9) * SIM_HZ))


def _episode_messages(ep: TabletopEpisode, start_ns: int, rng: np.random.Generator) -> list[BagMessage]:
    """Every message of one episode, in log-time order (as rosbag2 writes them)."""

    def joints(values: np.ndarray) -> np.ndarray:  # the arm6 sample's convention: gripper 0 open, 1 closed
        return portable(np.concatenate([values[:6], 1.0 - values[6:7]]))

    out: list[tuple[int, int, BagMessage]] = []

    def add(order: int, topic: str, kind: str, stamp: int, fields: dict) -> None:
        log = start_ns + stamp + TRANSPORT_NS
        out.append((log, order, BagMessage(topic, kind, log, fields)))

    add(0, "/task", "std_msgs/msg/String", 0, {"data": ep.instruction})
    for t in _ticks(50, 0.0):
        add(
            1,
            "/joint_states",
            "sensor_msgs/msg/JointState",
            int(t),
            joint_state(start_ns + t, joints(ep.qpos[_step(ep, t)])),
        )
    for t in _ticks(15, 0.010):
        add(
            2,
            "/joint_commands",
            "sensor_msgs/msg/JointState",
            int(t),
            joint_state(start_ns + t, joints(ep.command[_step(ep, t)])),
        )
    jitter = rng.integers(-JITTER_NS, JITTER_NS + 1, size=(2, 64))
    for t in _ticks(15, 0.020, jitter[0]):
        pixels = render_tabletop(ep, _step(ep, t), SIZE)["third_person"]
        msg = {"header": _header(start_ns + t, "front"), "format": "jpeg", "data": _jpeg(pixels)}
        add(3, "/camera/front/compressed", "sensor_msgs/msg/CompressedImage", int(t), msg)
    for t in _ticks(15, 0.025, jitter[1]):
        pixels = render_tabletop(ep, _step(ep, t), SIZE)["wrist"]
        add(4, "/camera/wrist/image_raw", "sensor_msgs/msg/Image", int(t), image_msg(start_ns + t, pixels))
    return [m for _, _, m in sorted(out, key=lambda x: (x[0], x[1]))]


def generate_mcap(out: Path, seed: int = 0, episodes: int = 2) -> list[Path]:
    """Write `out/ros2_sim/episode_<i>.mcap`, one bag per episode (~2 s, 30 frames at 15 Hz)."""
    rng = np.random.default_rng(seed)
    written = []
    for i in range(episodes):
        ep = simulate_tabletop(seed * 1000 + 300 + i)
        start = EPOCH_NS + i * 60 * 10**9  # a minute apart
        written.append(write_bag(out / "ros2_sim" / f"episode_{i}.mcap", _episode_messages(ep, start, rng)))
    return written
