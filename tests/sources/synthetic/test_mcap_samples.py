"""The bundled ROS 2 sample: deterministic MCAP bags whose topics tick at their own rates."""

from __future__ import annotations

import numpy as np
from conftest import SAMPLES
from mcap.reader import make_reader

from vlamix.sources.synthetic.mcap_samples import generate_mcap


def test_regenerating_gives_the_checked_in_bytes(tmp_path):
    written = generate_mcap(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [
        "ros2_sim/episode_0.mcap",
        "ros2_sim/episode_1.mcap",
    ]
    for path in written:
        assert path.read_bytes() == (SAMPLES / path.relative_to(tmp_path)).read_bytes(), path.name


def test_topics_tick_at_their_own_rates_with_camera_jitter():
    with open(SAMPLES / "ros2_sim" / "episode_0.mcap", "rb") as f:
        reader = make_reader(f)
        times: dict[str, list[int]] = {}
        for _, channel, message in reader.iter_messages():
            times.setdefault(channel.topic, []).append(message.log_time)
    periods = {t: np.diff(v) / 1e9 for t, v in times.items() if len(v) > 1}
    assert np.allclose(periods["/joint_states"], 1 / 50) and np.allclose(periods["/joint_commands"], 1 / 15)
    camera = periods["/camera/front/compressed"]
    assert abs(camera.mean() - 1 / 15) < 1e-3 and 0.001 < camera.std() < 0.005  # seeded jitter
    assert len(times["/task"]) == 1 and len(times["/camera/wrist/image_raw"]) == 30
