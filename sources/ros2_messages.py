"""Values out of decoded ROS 2 messages (mcap-ros2-support's objects; format: mcap), each by a written rule
or refused with the reason (sources/fields.py FieldError, schemas/image_codec.py ImageDecodeError).

- A field is a dotted path (`position`, `pose.position.x`); a part that is a number indexes a sequence
  (`poses.0.position`).
- Numbers: a number gives one dim, a numeric array several (`float64[]`, `uint8[]`), a message whose fields
  are all numbers its fields in declaration order (`geometry_msgs/Point` -> x, y, z; `Quaternion` -> x,
  y, z, w). Bools, texts and other messages are refused.
- Images: `sensor_msgs/msg/CompressedImage` decodes as the image file it holds (JPEG, PNG: the `format`
  text is not needed); `sensor_msgs/msg/Image` of encoding rgb8, bgr8, rgba8, bgra8 (alpha dropped) or
  mono8 (grey repeated) becomes RGB; other encodings (16-bit, depth, Bayer, YUV) are refused by name.
"""

from __future__ import annotations

import numpy as np

from vlamix.schemas.image_codec import CameraImage, ImageDecodeError, check_pixels, decode_camera
from vlamix.sources.fields import FieldError, scalar_text

__all__ = [
    "COMPRESSED_IMAGE",
    "IMAGE",
    "IMAGE_ENCODINGS",
    "JOINT_STATE",
    "field_value",
    "image_pixels",
    "is_image_type",
    "message_text",
    "numbers",
    "type_name",
]

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
JOINT_STATE = "sensor_msgs/msg/JointState"
# encoding -> (channels, the channel order that gives RGB)
IMAGE_ENCODINGS = {
    "rgb8": (3, [0, 1, 2]),
    "bgr8": (3, [2, 1, 0]),
    "rgba8": (4, [0, 1, 2]),
    "bgra8": (4, [2, 1, 0]),
    "mono8": (1, [0, 0, 0]),
}


def type_name(schema_name: str) -> str:
    """`pkg/msg/Type` for a schema named either so or `pkg/Type` (ROS 1 style, some converters)."""
    parts = schema_name.split("/")
    return f"{parts[0]}/msg/{parts[1]}" if len(parts) == 2 else schema_name


def is_image_type(schema_name: str) -> bool:
    return type_name(schema_name) in (IMAGE, COMPRESSED_IMAGE)


def _fields(msg: object) -> list[str] | None:
    slots = getattr(type(msg), "__slots__", None)
    return list(slots) if isinstance(slots, list | tuple) else None


def field_value(msg: object, path: str) -> object:
    """The value at a dotted path in a decoded message."""
    value = msg
    for depth, part in enumerate(path.split(".")):
        where = ".".join(path.split(".")[:depth]) or "the message"
        names = _fields(value)
        if part.isdigit() and isinstance(value, list | tuple | bytes):
            if int(part) >= len(value):
                raise FieldError(f"{where} holds {len(value)} entries, no index {part}")
            value = value[int(part)]
        elif names is not None and part in names:
            value = getattr(value, part)
        elif names is not None:
            raise FieldError(f"{where} has no field {part!r} (its fields: {', '.join(names)})")
        else:
            raise FieldError(f"{where} is {type(value).__name__}, which has no field {part!r}")
    return value


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def numbers(value: object, what: str) -> np.ndarray:
    """A field's value as a 1-D float64 vector (the rules above), or FieldError."""
    if _is_number(value):
        return np.array([value], np.float64)
    if isinstance(value, bytes | bytearray):
        return np.frombuffer(value, np.uint8).astype(np.float64)
    if isinstance(value, list | tuple):
        bad = next((k for k, v in enumerate(value) if not _is_number(v)), None)
        if bad is not None:
            v = value[bad]
            raise FieldError(f"{what}[{bad}] is {type(v).__name__} {str(v)[:40]!r}, not a number")
        return np.asarray(value, np.float64).reshape(-1)
    names = _fields(value)
    if names is not None:
        values = [getattr(value, n) for n in names]
        if names and all(_is_number(v) for v in values):
            return np.asarray(values, np.float64)
        raise FieldError(
            f"{what} is a {type(value).__name__} message with fields {', '.join(names)}, not numbers: name "
            f"one of its number fields ({what}.{names[0]}, ...) or list several"
        )
    raise FieldError(f"{what} is {type(value).__name__} {str(value)[:40]!r}, not numbers")


def message_text(value: object, what: str) -> str | None:
    """An instruction field's text (empty: none), or FieldError for a value that is not a text."""
    if not isinstance(value, str):
        raise FieldError(f"{what} is {type(value).__name__} {str(value)[:40]!r}, not text (a string field)")
    return scalar_text(value, what)


def image_pixels(msg: object, schema_name: str, box: int | None) -> CameraImage:
    """An image message as RGB pixels (CompressedImage decoded at `box` like every reader's JPEGs, see
    schemas/image_codec.py decode_camera). Raises ImageDecodeError naming what does not fit."""
    kind = type_name(schema_name)
    if kind == COMPRESSED_IMAGE:
        return decode_camera(bytes(msg.data), box)  # type: ignore[attr-defined]
    if kind != IMAGE:
        raise ImageDecodeError(f"a {schema_name} message is not an image")
    encoding = str(msg.encoding)  # type: ignore[attr-defined]
    if encoding not in IMAGE_ENCODINGS:
        raise ImageDecodeError(
            f"Image encoding {encoding!r} has no rule to become RGB (known: {', '.join(IMAGE_ENCODINGS)}): "
            "map a depth or 16-bit camera to null in `keys: {cameras: ...}`, or republish it as rgb8"
        )
    channels, order = IMAGE_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)  # type: ignore[attr-defined]
    check_pixels(width, height, f"Image of {width}x{height}")
    data = bytes(msg.data)  # type: ignore[attr-defined]
    if height == 0 or width == 0 or step < width * channels or len(data) != step * height:
        raise ImageDecodeError(
            f"Image {width}x{height} {encoding} with step {step} needs {step * height} bytes, it has "
            f"{len(data)}: a truncated or mislabelled image"
        )
    rows = np.frombuffer(data, np.uint8).reshape(height, step)[:, : width * channels]
    pixels = rows.reshape(height, width, channels)
    return np.ascontiguousarray(pixels[..., order])
