"""Rotation representations (transforms/rotation_repr.py): every representation round-trips through
the matrix, also near +-pi and at gimbal lock (where Euler angles are not unique, the rotation is); the
delta of two rotations is the relative rotation and composes back; non-rotations are refused."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vlamix.transforms.rotation_repr import SIZES, compose, from_matrix, relative, to_matrix


def _hard_rotations() -> np.ndarray:
    """Random rotations, plus angles near +-pi about each axis and pitch at +-pi/2 (gimbal lock)."""
    rng = np.random.default_rng(0)
    random = Rotation.random(200, random_state=1).as_matrix()
    eps = [0.0, 1e-7, 1e-4]
    near_pi = [Rotation.from_rotvec(axis * (np.pi - e)).as_matrix() for axis in np.eye(3) for e in eps] + [
        Rotation.from_rotvec(-axis * (np.pi - 1e-6)).as_matrix() for axis in np.eye(3)
    ]
    lock = [
        Rotation.from_euler("xyz", [rng.uniform(-3, 3), s * (np.pi / 2 - e), rng.uniform(-3, 3)]).as_matrix()
        for s in (1, -1)
        for e in eps
    ]
    return np.concatenate([random, np.stack(near_pi), np.stack(lock)])


@pytest.mark.parametrize("repr_", list(SIZES))
def test_every_representation_round_trips_through_the_matrix(repr_):
    m = _hard_rotations()
    values = from_matrix(m, repr_)
    assert values.shape == (len(m), SIZES[repr_])
    back = to_matrix(values, repr_)
    np.testing.assert_allclose(back, m, atol=1e-6)  # the rotation, whatever the angles chosen
    again = from_matrix(back, repr_)
    if repr_ not in ("euler_xyz", "rotvec", "quat_xyzw", "quat_wxyz"):
        np.testing.assert_allclose(again, values, atol=1e-6)
    np.testing.assert_allclose(to_matrix(again, repr_), m, atol=1e-6)


def test_a_delta_is_the_relative_rotation_and_composes_back():
    m = _hard_rotations()
    a, b = m[:-1], m[1:]
    d = relative(a, b)
    np.testing.assert_allclose(compose(a, d), b, atol=1e-9)
    # about one axis, the relative rotation's angle is the wrapped difference: a +179 deg to -179 deg
    # turn is 2 degrees, where the components' difference says 358
    ra = Rotation.from_euler("z", np.deg2rad(179)).as_matrix()
    rb = Rotation.from_euler("z", np.deg2rad(-179)).as_matrix()
    np.testing.assert_allclose(from_matrix(relative(ra, rb), "rotvec"), [0, 0, np.deg2rad(2)], atol=1e-9)


def test_quaternion_orders_and_norms():
    q_xyzw = np.array([0.0, 0.0, np.sin(0.25), np.cos(0.25)])
    m = to_matrix(q_xyzw, "quat_xyzw")
    np.testing.assert_allclose(to_matrix(q_xyzw[[3, 0, 1, 2]], "quat_wxyz"), m)
    np.testing.assert_allclose(to_matrix(-q_xyzw, "quat_xyzw"), m, atol=1e-12)  # q and -q: one rotation
    np.testing.assert_allclose(to_matrix(q_xyzw * 1.004, "quat_xyzw"), m, atol=1e-12)  # rounded: normalized
    with pytest.raises(ValueError, match="quaternion norm 1.1 is not 1"):
        to_matrix(q_xyzw * 1.1, "quat_xyzw")
    assert from_matrix(m, "quat_wxyz")[0] >= 0  # one sign chosen


def test_what_is_not_a_rotation_is_refused():
    with pytest.raises(ValueError, match="one of euler_xyz"):
        to_matrix(np.zeros(3), "euler_zyx")
    with pytest.raises(ValueError, match="4 values per rotation"):
        to_matrix(np.zeros(3), "quat_xyzw")
    with pytest.raises(ValueError, match="not a rotation"):
        to_matrix(np.eye(3).ravel() * 2, "matrix")
    with pytest.raises(ValueError, match="parallel columns"):
        to_matrix(np.array([1.0, 0, 0, 2.0, 0, 0]), "rot6d")
    with pytest.raises(ValueError, match="non-finite"):
        to_matrix(np.array([np.nan, 0, 0]), "rotvec")
