from __future__ import annotations

import numpy as np

from vlamix.transforms.filters import select_frames


def test_idle_frames_go_before_the_stride():
    a = np.zeros((10, 2))
    a[4:, 0] = np.arange(6) * 0.1  # still for frames 0-4, then moving
    assert select_frames(a).tolist() == list(range(10))
    assert select_frames(a, idle_threshold=0.05).tolist() == [5, 6, 7, 8, 9]
    assert select_frames(a, stride=2, idle_threshold=0.05).tolist() == [5, 7, 9]
    assert select_frames(a, stride=3).tolist() == [0, 3, 6, 9]


def test_first_frame_compares_with_the_second():
    a = np.array([[0.0], [1.0], [1.0], [2.0]])
    assert select_frames(a, idle_threshold=0.5).tolist() == [0, 1, 3]
