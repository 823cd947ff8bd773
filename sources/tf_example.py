"""`tf.train.Example` without TensorFlow: the message classes are built from a descriptor at import (the
same wire format as tensorflow/core/example/{example,feature}.proto), in a private descriptor pool."""

from __future__ import annotations

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ["Example", "decode_example", "encode_example"]

_F = descriptor_pb2.FieldDescriptorProto


def _build_classes():
    fdp = descriptor_pb2.FileDescriptorProto(
        name="vlamix/tf_example.proto", package="vlamix.tf", syntax="proto3"
    )

    def message(
        name: str, fields: list[tuple[str, int, int, int, str | None]]
    ) -> descriptor_pb2.DescriptorProto:
        msg = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            f = msg.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = type_name
        return msg

    rep, opt = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL
    message("BytesList", [("value", 1, _F.TYPE_BYTES, rep, None)])
    message("FloatList", [("value", 1, _F.TYPE_FLOAT, rep, None)])
    message("Int64List", [("value", 1, _F.TYPE_INT64, rep, None)])
    feature = message(
        "Feature",
        [
            ("bytes_list", 1, _F.TYPE_MESSAGE, opt, ".vlamix.tf.BytesList"),
            ("float_list", 2, _F.TYPE_MESSAGE, opt, ".vlamix.tf.FloatList"),
            ("int64_list", 3, _F.TYPE_MESSAGE, opt, ".vlamix.tf.Int64List"),
        ],
    )
    feature.oneof_decl.add(name="kind")
    for f in feature.field:
        f.oneof_index = 0
    features = message("Features", [("feature", 1, _F.TYPE_MESSAGE, rep, ".vlamix.tf.Features.FeatureEntry")])
    entry = features.nested_type.add(name="FeatureEntry")
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=opt)
    entry.field.add(name="value", number=2, type=_F.TYPE_MESSAGE, label=opt, type_name=".vlamix.tf.Feature")
    entry.options.map_entry = True
    message("Example", [("features", 1, _F.TYPE_MESSAGE, opt, ".vlamix.tf.Features")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("vlamix.tf.Example"))


Example = _build_classes()


def decode_example(data: bytes) -> dict[str, list[bytes] | np.ndarray]:
    """Serialized Example -> {feature name: list of bytes | float32 array | int64 array}."""
    ex = Example()
    ex.ParseFromString(data)
    out: dict[str, list[bytes] | np.ndarray] = {}
    for name, feat in ex.features.feature.items():
        kind = feat.WhichOneof("kind")
        if kind == "bytes_list":
            out[name] = list(feat.bytes_list.value)
        elif kind == "float_list":
            out[name] = np.asarray(feat.float_list.value, dtype=np.float32)
        elif kind == "int64_list":
            out[name] = np.asarray(feat.int64_list.value, dtype=np.int64)
        else:
            out[name] = []
    return out


_INT64 = (-(2**63), 2**63 - 1)


def _int64_values(name: str, arr: np.ndarray) -> list[int]:
    """The values as int64, refusing (not wrapping) an unsigned or Python int outside int64's range."""
    if arr.dtype.kind in "uO" and arr.size:
        values = arr.tolist()
        lo, hi = min(values), max(values)
        if lo < _INT64[0] or hi > _INT64[1]:
            raise ValueError(
                f"feature {name!r}: value {hi if hi > _INT64[1] else lo} is outside int64 [{_INT64[0]}, "
                f"{_INT64[1]}], which is all a tf.train.Example int64_list holds: store it as bytes"
            )
    return arr.astype(np.int64).tolist()


def encode_example(features: dict[str, list[bytes] | np.ndarray]) -> bytes:
    """{name: list of bytes | float array | int array} -> serialized Example (keys written sorted)."""
    ex = Example()
    for name in sorted(features):
        value = features[name]
        feat = ex.features.feature[name]
        if isinstance(value, list | tuple) and (not value or isinstance(value[0], bytes)):
            feat.bytes_list.value.extend(value)
        else:
            arr = np.asarray(value)
            if arr.dtype.kind == "f":
                feat.float_list.value.extend(arr.astype(np.float32).ravel().tolist())
            else:
                feat.int64_list.value.extend(_int64_values(name, arr.ravel()))
    return ex.SerializeToString(deterministic=True)
