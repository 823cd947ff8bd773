"""Rotation representations and relative rotations (issue 24, part 5; not yet wired into the
embodiment specs or the transform chain): a rotation group's values in any source representation go to
a rotation matrix and from it to the training representation, and the delta of two rotations is the
relative rotation R_t^-1 R_{t+h}, not a difference of components. scipy's `Rotation` does the
conversions; rot6d (the first two columns of the matrix, Zhou et al. 2019) is built on its matrices.

Conventions: `euler_xyz` is extrinsic x, y, z (roll, pitch, yaw) in radians, scipy's "xyz";
quaternions are `quat_xyzw` (scipy's, ROS's) or `quat_wxyz` (MuJoCo's, Eigen's constructor order);
`rotvec` is axis times angle; `matrix` is 9 values, row-major; `rot6d` is 6 values, the matrix's first
column then its second."""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = [
    "QUAT_TOLERANCE",
    "SIZES",
    "RotationRepr",
    "compose",
    "from_matrix",
    "relative",
    "to_matrix",
]

RotationRepr = Literal["euler_xyz", "quat_xyzw", "quat_wxyz", "rotvec", "matrix", "rot6d"]
SIZES: dict[str, int] = {"euler_xyz": 3, "quat_xyzw": 4, "quat_wxyz": 4, "rotvec": 3, "matrix": 9, "rot6d": 6}
# A quaternion whose norm is off by at most this is normalized (loggers round to a few digits); beyond
# it the values are not a rotation and are refused.
QUAT_TOLERANCE = 1e-2


def _check(x: np.ndarray, repr_: str) -> np.ndarray:
    if repr_ not in SIZES:
        raise ValueError(f"rotation representation {repr_!r}: one of {', '.join(SIZES)}")
    x = np.asarray(x, dtype=np.float64)
    if x.shape[-1:] != (SIZES[repr_],):
        raise ValueError(f"{repr_}: {SIZES[repr_]} values per rotation, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{repr_}: non-finite values")
    return x


def _orthonormal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Gram-Schmidt of two 3-vectors [..., 3] -> rotation matrices [..., 3, 3] (columns a', b', a' x b')."""
    na = np.linalg.norm(a, axis=-1, keepdims=True)
    if (na < 1e-9).any():
        raise ValueError("rot6d: a zero first column is not a rotation")
    a = a / na
    b = b - (a * b).sum(-1, keepdims=True) * a
    nb = np.linalg.norm(b, axis=-1, keepdims=True)
    if (nb < 1e-9).any():
        raise ValueError("rot6d: parallel columns are not a rotation")
    b = b / nb
    return np.stack([a, b, np.cross(a, b)], axis=-1)


def to_matrix(x: np.ndarray, repr_: str) -> np.ndarray:
    """[..., k] values in `repr_` -> [..., 3, 3] rotation matrices. A quaternion's norm within
    QUAT_TOLERANCE of 1 is normalized; farther off, or a matrix that is not a rotation, is a ValueError."""
    x = _check(x, repr_)
    lead = x.shape[:-1]
    flat = x.reshape(-1, SIZES[repr_])
    if repr_ in ("quat_xyzw", "quat_wxyz"):
        q = flat if repr_ == "quat_xyzw" else flat[:, [1, 2, 3, 0]]
        norm = np.linalg.norm(q, axis=-1)
        bad = np.abs(norm - 1.0) > QUAT_TOLERANCE
        if bad.any():
            raise ValueError(
                f"{repr_}: quaternion norm {norm[bad][0]:.4g} is not 1 (tolerance {QUAT_TOLERANCE}): not a rotation"
            )
        m = Rotation.from_quat(q / norm[:, None]).as_matrix()
    elif repr_ == "euler_xyz":
        m = Rotation.from_euler("xyz", flat).as_matrix()
    elif repr_ == "rotvec":
        m = Rotation.from_rotvec(flat).as_matrix()
    elif repr_ == "rot6d":
        m = _orthonormal(flat[:, 0:3], flat[:, 3:6])
    else:
        m = flat.reshape(-1, 3, 3)
        eye = np.einsum("nij,nkj->nik", m, m)
        if not (np.allclose(eye, np.eye(3), atol=1e-4) and np.allclose(np.linalg.det(m), 1.0, atol=1e-4)):
            raise ValueError("matrix: not a rotation (R R^T != I or det != 1 within 1e-4)")
    return m.reshape(*lead, 3, 3)


def from_matrix(m: np.ndarray, repr_: str) -> np.ndarray:
    """[..., 3, 3] rotation matrices -> [..., k] values in `repr_` (quaternions with w >= 0; Euler
    angles in scipy's ranges, a unique choice away from pitch = +-pi/2, where the third is 0)."""
    if repr_ not in SIZES:
        raise ValueError(f"rotation representation {repr_!r}: one of {', '.join(SIZES)}")
    m = np.asarray(m, dtype=np.float64)
    lead = m.shape[:-2]
    flat = m.reshape(-1, 3, 3)
    if repr_ == "matrix":
        out = flat.reshape(-1, 9)
    elif repr_ == "rot6d":
        out = np.concatenate([flat[:, :, 0], flat[:, :, 1]], axis=-1)
    else:
        r = Rotation.from_matrix(flat)
        if repr_ == "euler_xyz":
            with warnings.catch_warnings():  # at pitch +-pi/2 scipy sets the third angle to 0 and says so
                warnings.simplefilter("ignore", UserWarning)
                out = r.as_euler("xyz")
        elif repr_ == "rotvec":
            out = r.as_rotvec()
        else:
            q = r.as_quat(canonical=True)  # xyzw, w >= 0
            out = q if repr_ == "quat_xyzw" else q[:, [3, 0, 1, 2]]
    return out.reshape(*lead, SIZES[repr_])


def relative(r_from: np.ndarray, r_to: np.ndarray) -> np.ndarray:
    """The rotation taking `r_from` to `r_to`, in `r_from`'s frame: R_from^-1 R_to ([..., 3, 3])."""
    return np.swapaxes(r_from, -1, -2) @ r_to


def compose(r_from: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """The inverse of `relative`: R_from delta."""
    return r_from @ delta
