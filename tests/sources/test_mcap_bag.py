"""format: mcap: ROS 2 bags sampled at the control rate (sources/mcap_bag.py, sources/topic_align.py)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from conftest import SAMPLES, as_written, ingest_cli
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from PIL import Image

from vlamix.config import ConfigError
from vlamix.schemas.frame import FRAME
from vlamix.schemas.quarantine import BadRecord
from vlamix.sources.config import load_sources
from vlamix.sources.episode import EpisodeRef
from vlamix.sources.mcap_bag import list_episodes, read_episode
from vlamix.sources.synthetic.mcap_samples import BagMessage, image_msg, joint_state, write_bag
from vlamix.sources.topic_align import NoOverlap, TopicGap, align, latest_at_or_before

SPEC = SAMPLES / "embodiments" / "sim_arm6.yaml"
T0 = 1_600_000_000 * 10**9
MS = 1_000_000
STATE = "{topic: /joint_states, field: position}"
CAMERAS = "{/camera/front/compressed: base_0, /camera/wrist/image_raw: left_wrist}"


# --- alignment (pure) ---------------------------------------------------------------------------


def _ns(*seconds: float) -> np.ndarray:
    return np.round(np.asarray(seconds) * 1e9).astype(np.int64)


def test_latest_message_at_or_before_each_frame_never_a_later_one():
    times = _ns(0.0, 0.1, 0.2)
    assert latest_at_or_before(times, _ns(-0.01, 0.0, 0.099, 0.1, 0.25)).tolist() == [-1, 0, 0, 1, 2]


def test_grid_starts_when_every_topic_has_started_and_ends_with_the_first_to_end():
    fast = _ns(*np.arange(0, 2.0, 0.02))  # 50 Hz from 0 s to 1.98 s
    slow = _ns(*(0.5 + np.arange(0, 1.2, 0.1)))  # 10 Hz from 0.5 s to 1.6 s
    al = align({"/fast": fast, "/slow": slow}, 10.0, 1000)
    assert al.times[0] == _ns(0.5)[0] and al.dropped == 0  # nothing before /slow starts
    assert len(al.times) == 12 and al.times[-1] == _ns(1.6)[0]
    assert al.picks["/slow"].tolist() == list(range(12))
    assert fast[al.picks["/fast"]].tolist() == _ns(*(0.5 + np.arange(12) * 0.1)).tolist()


def test_leading_frames_with_a_stale_topic_are_dropped():
    state = _ns(*np.arange(0.5, 2.0, 0.02))  # starts at 0.5 s: the grid starts there
    camera = _ns(0.0, *np.arange(1.0, 2.0, 0.1))  # one frame at 0 s, then nothing until 1 s
    al = align({"/state": state, "/camera": camera}, 10.0, 1000)
    assert al.dropped == 5  # 0.5 .. 0.9 s: the camera's only message is older than 2 periods (0.2 s)
    assert al.times[0] == _ns(1.0)[0] and al.picks["/camera"][0] == 1
    assert state[al.picks["/state"][0]] == _ns(1.0)[0]


def test_a_gap_after_the_start_names_the_topic_and_time():
    state = _ns(*np.arange(0, 3.0, 0.02))
    camera = _ns(*[t for t in np.arange(0, 3.0, 0.1) if not 1.05 < t < 1.65])
    with pytest.raises(TopicGap) as info:
        align({"/state": state, "/camera": camera}, 10.0, 1000)
    e = info.value
    assert (e.topic, e.frame, e.time_ns) == ("/camera", 13, _ns(1.3)[0])  # 1.2 s: 2 periods old, still fresh
    assert "gap in /camera: no message for 0.300 s before frame 13" in str(e) and "1.300 s into" in str(e)


def test_topics_that_never_overlap_and_wild_times_are_refused():
    with pytest.raises(NoOverlap, match="/a ends .* before /b starts"):
        align({"/a": _ns(0.0, 0.1), "/b": _ns(1.0, 1.1)}, 10.0, 1000)
    with pytest.raises(ValueError, match="above the cap of 1,000"):
        align({"/a": _ns(0.0, 3600.0)}, 10.0, 1000)


# --- crafted bags -------------------------------------------------------------------------------


def _jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _pixels(k: int) -> np.ndarray:
    """8x8 RGB with a distinct value per channel (a flip shows) and a per-frame shift."""
    img = np.zeros((8, 8, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 200, 90 + k, 20
    img[:, :4, 2] = 160
    return img


def _messages(
    seconds: float = 1.0,
    *,
    width: int = 7,
    encoding: str = "rgb8",
    skip: tuple[str, ...] = (),
    gap: tuple[str, float, float] | None = None,
    renamed_at: float | None = None,
    depth: bool = False,
) -> list[BagMessage]:
    out: list[BagMessage] = []

    def add(topic: str, kind: str, t: float, fields: dict) -> None:
        if topic in skip or (gap and gap[0] == topic and gap[1] <= t < gap[2]):
            return
        out.append(BagMessage(topic, kind, T0 + round(t * 1e9), fields))

    add("/task", "std_msgs/msg/String", 0.0, {"data": "stack the cups"})
    for k, t in enumerate(np.arange(0, seconds, 0.02)):
        names = tuple(f"j{j}" for j in range(width))
        if renamed_at is not None and t >= renamed_at:
            names = names[::-1]
        add(
            "/joint_states", "sensor_msgs/msg/JointState", t, joint_state(0, k + np.arange(width) / 10, names)
        )
    for k, t in enumerate(np.arange(0.005, seconds, 1 / 15)):
        add("/joint_commands", "sensor_msgs/msg/JointState", t, joint_state(0, -k - np.arange(7) / 10))
    for k, t in enumerate(np.arange(0.010, seconds, 1 / 15)):
        front = {"header": image_msg(0, _pixels(k))["header"], "format": "jpeg", "data": _jpeg(_pixels(k))}
        add("/camera/front/compressed", "sensor_msgs/msg/CompressedImage", t, front)
        pixels = {"rgb8": _pixels(k), "bgr8": _pixels(k)[..., ::-1], "mono8": _pixels(k)[..., 1]}.get(
            encoding, _pixels(k)[..., :2].copy()
        )
        add("/camera/wrist/image_raw", "sensor_msgs/msg/Image", t + 0.002, image_msg(0, pixels, encoding))
        if depth:
            add(
                "/camera/depth",
                "sensor_msgs/msg/Image",
                t,
                image_msg(0, np.zeros((8, 8, 2), np.uint8), "16UC1"),
            )
    return sorted(out, key=lambda m: m.log_time)


def _sources(tmp_path, write_sources, path="bags", state=STATE, rate=15, cameras=CAMERAS, extra=""):
    return load_sources(
        write_sources(
            tmp_path,
            f"""
            datasets:
              - name: ros
                kind: CE
                format: mcap
                path: {path}
                embodiment: {SPEC}
                rate: {rate}
                keys:
                  state: {state}
                  action: {{topic: /joint_commands, field: position}}
                  instruction: {{topic: /task, field: data}}
                  cameras: {cameras}
                {extra}""",
        )
    )


def _read(tmp_path, write_sources, **kw) -> tuple[list[list[dict]], list[EpisodeRef]]:
    sources = _sources(tmp_path, write_sources, **kw)
    src = sources.datasets[0]
    refs = list_episodes(sources, src)
    return [list(read_episode(ref, src, sources.embodiment(src))) for ref in refs], refs


def _quarantined(tmp_path, write_sources, bag_name="episode_1.mcap", **kw) -> BadRecord:
    """Read one bag as a worker does (listing looks into the first bag only): its quarantine."""
    sources = _sources(tmp_path, write_sources, **kw)
    src = sources.datasets[0]
    ref = EpisodeRef("ros", 1, str(tmp_path / "bags" / bag_name), f"bags/{bag_name}")
    with pytest.raises(BadRecord) as info:
        list(read_episode(ref, src, sources.embodiment(src)))
    return info.value


def test_bundled_sample_reads_at_the_control_rate(tmp_path, write_sources):
    sources = _sources(tmp_path, write_sources, path=str(SAMPLES / "ros2_sim"), extra="task: pick it up")
    src = sources.datasets[0]
    refs = list_episodes(sources, src)
    assert [(r.index, r.source_file.rsplit("/", 1)[-1]) for r in refs] == [
        (0, "episode_0.mcap"),
        (1, "episode_1.mcap"),
    ]
    rows = list(read_episode(refs[0], src, sources.embodiment(src)))
    FRAME.table(as_written(rows[:3]))  # rows the extract step can write
    with open(refs[0].path, "rb") as f:
        msgs = [
            (c.topic, m.log_time, d)
            for _, c, m, d in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages()
        ]
    times = {
        t: np.array([lt for tt, lt, _ in msgs if tt == t])
        for t in ("/joint_states", "/joint_commands", "/camera/front/compressed", "/camera/wrist/image_raw")
    }
    start = max(t[0] for t in times.values())
    assert len(rows) == 29 and rows[0]["task"].startswith("put the ")  # the /task text beats `task:`
    for i in (0, 13, 28):
        at = start + round(i * 1e9 / 15)
        latest = {
            t: next(d for tt, lt, d in msgs if tt == t and lt == max(ts[ts <= at])) for t, ts in times.items()
        }
        np.testing.assert_array_equal(rows[i]["state"], np.float32(latest["/joint_states"].position))
        np.testing.assert_array_equal(rows[i]["action"], np.float32(latest["/joint_commands"].position))
        wrist = np.frombuffer(latest["/camera/wrist/image_raw"].data, np.uint8).reshape(64, 64, 3)
        np.testing.assert_array_equal(rows[i]["image_left_wrist"], wrist)
        assert rows[i]["timestamp"] == pytest.approx(i / 15)
    assert rows[0]["image_base_0"].shape == rows[0]["image_left_wrist"].shape == (64, 64, 3)
    assert len({r["episode_hash"] for r in rows}) == 1
    again = list(read_episode(refs[0], src, sources.embodiment(src)))
    assert again[0]["episode_hash"] == rows[0]["episode_hash"]


def test_bgr8_and_mono8_images_become_rgb(tmp_path, write_sources):
    for name, enc in (("episode_0", "rgb8"), ("episode_1", "bgr8"), ("episode_2", "mono8")):
        write_bag(tmp_path / "bags" / f"{name}.mcap", _messages(encoding=enc))
    (rgb, bgr, mono), _ = _read(tmp_path, write_sources)
    assert len(rgb) == len(bgr) == len(mono) == 14
    np.testing.assert_array_equal(rgb[3]["image_left_wrist"], _pixels(3))
    np.testing.assert_array_equal(bgr[3]["image_left_wrist"], _pixels(3))  # flipped back
    assert (mono[3]["image_left_wrist"] == 93).all()  # the grey (green) channel, three times


def test_unknown_image_encoding_is_quarantined_naming_it(tmp_path, write_sources):
    write_bag(tmp_path / "bags" / "episode_0.mcap", _messages())
    write_bag(tmp_path / "bags" / "episode_1.mcap", _messages(encoding="16UC1"))
    rec = _quarantined(tmp_path, write_sources).record
    assert "Image encoding '16UC1' has no rule to become RGB" in rec.reason
    assert (rec.field, rec.frame, rec.frames) == ("image_left_wrist", 0, 14)


def test_truncated_bag_is_quarantined_naming_file_and_byte(tmp_path, write_sources):
    write_bag(tmp_path / "bags" / "episode_0.mcap", _messages())
    whole = write_bag(tmp_path / "bags" / "episode_1.mcap", _messages(), chunk_size=4096).read_bytes()
    (tmp_path / "bags" / "episode_1.mcap").write_bytes(whole[: len(whole) // 2])  # cut mid-recording
    rec = _quarantined(tmp_path, write_sources).record
    assert rec.reason.startswith(
        f"truncated MCAP: episode_1.mcap ends at byte {len(whole) // 2} before its footer"
    )
    assert rec.source_file == "bags/episode_1.mcap" and rec.episode == 1


def test_corrupted_byte_is_quarantined(tmp_path, write_sources):
    write_bag(tmp_path / "bags" / "episode_0.mcap", _messages())
    data = bytearray(write_bag(tmp_path / "bags" / "episode_1.mcap", _messages()).read_bytes())
    data[len(data) // 3] ^= 0xFF
    (tmp_path / "bags" / "episode_1.mcap").write_bytes(bytes(data))
    assert "MCAP: episode_1.mcap" in _quarantined(tmp_path, write_sources).record.reason


def test_missing_topic_fails_listing_on_the_first_bag_and_quarantines_a_later_one(tmp_path, write_sources):
    write_bag(tmp_path / "bags" / "episode_0.mcap", _messages(skip=("/joint_commands",)))
    with pytest.raises(
        ConfigError, match=r"bags/episode_0.mcap \(the first bag.*topic /joint_commands is not in the bag"
    ):
        _read(tmp_path, write_sources)
    write_bag(tmp_path / "bags" / "episode_0.mcap", _messages())
    write_bag(tmp_path / "bags" / "episode_1.mcap", _messages(skip=("/camera/front/compressed",)))
    rec = _quarantined(tmp_path, write_sources).record
    assert (
        rec.reason.startswith("topic /camera/front/compressed is not in the bag")
        and rec.field == "/camera/front/compressed"
    )


def test_an_image_topic_nobody_mapped_is_an_error_until_mapped_to_null(tmp_path, write_sources):
    write_bag(tmp_path / "bags" / "episode_0.mcap", _messages(depth=True))
    with pytest.raises(ConfigError, match="unknown camera '/camera/depth': map it to a slot"):
        _read(tmp_path, write_sources)
    (rows,), _ = _read(tmp_path, write_sources, cameras=CAMERAS[:-1] + ", /camera/depth: null}")
    assert len(rows) == 14 and rows[0]["image_base_1"] is None


def test_wrong_field_and_wrong_width_are_named(tmp_path, write_sources):
    write_bag(tmp_path / "bags" / "episode_0.mcap", _messages())
    wrong = "{topic: /joint_states, field: positions}"
    with pytest.raises(ConfigError, match="the message has no field 'positions' .*header, name, position"):
        _read(tmp_path, write_sources, state=wrong)
    rec = _quarantined(tmp_path, write_sources, bag_name="episode_0.mcap", state=wrong).record  # read alone
    assert "no field 'positions'" in rec.reason and rec.field == "/joint_states:positions"
    write_bag(tmp_path / "bags" / "episode_0.mcap", _messages(width=6))
    with pytest.raises(
        ConfigError, match=r"state has 6 columns \(/joint_states position \(6\)\), .* sim_arm6 says 7"
    ):
        _read(tmp_path, write_sources)
    two = "[{topic: /joint_states, field: position}, {topic: /joint_commands, field: header.stamp}]"
    rec = _quarantined(tmp_path, write_sources, bag_name="episode_0.mcap", state=two).record
    assert "state has 8 columns (/joint_states position (6) + /joint_commands header.stamp (2))" in rec.reason


def test_a_gap_in_a_camera_quarantines_the_episode(tmp_path, write_sources):
    write_bag(tmp_path / "bags" / "episode_0.mcap", _messages(seconds=2.0))
    gap = ("/camera/front/compressed", 0.8, 1.3)  # its last message before: 0.743 s
    write_bag(tmp_path / "bags" / "episode_1.mcap", _messages(seconds=2.0, gap=gap))
    rec = _quarantined(tmp_path, write_sources).record
    assert rec.reason.startswith("gap in /camera/front/compressed: no message for 0.135 s before frame 13")
    assert (rec.field, rec.frame) == ("/camera/front/compressed", 13)  # 0.879 s: 2 periods + 2 ms old


def test_joint_names_that_change_mid_episode_are_quarantined(tmp_path, write_sources):
    write_bag(tmp_path / "bags" / "episode_0.mcap", _messages())
    write_bag(tmp_path / "bags" / "episode_1.mcap", _messages(renamed_at=0.5))
    assert "two publishers on one topic" in _quarantined(tmp_path, write_sources).record.reason


def test_bag_folder_with_split_files_reads_as_one_episode(tmp_path, write_sources):
    msgs = _messages()
    write_bag(tmp_path / "bags" / "episode_0.mcap", msgs)
    folder = tmp_path / "bags" / "run_1"
    write_bag(folder / "run_1_0.mcap", msgs[: len(msgs) // 2])
    write_bag(folder / "run_1_1.mcap", msgs[len(msgs) // 2 :])
    (folder / "metadata.yaml").write_text(
        "rosbag2_bagfile_information:\n  storage_identifier: mcap\n  relative_file_paths: [run_1_0.mcap, run_1_1.mcap]\n"
    )
    (one, split), refs = _read(tmp_path, write_sources)
    assert [r.source_file for r in refs] == ["bags/episode_0.mcap", "bags/run_1"]
    assert len(one) == len(split) == 14
    np.testing.assert_array_equal(one[9]["image_left_wrist"], split[9]["image_left_wrist"])
    assert one[0]["episode_hash"] == split[0]["episode_hash"]
    (folder / "metadata.yaml").write_text("rosbag2_bagfile_information:\n  storage_identifier: sqlite3\n")
    rec = _quarantined(tmp_path, write_sources, bag_name="run_1").record
    assert rec.reason.startswith("a sqlite3 bag") and "ros2 bag convert" in rec.reason


def test_rate_must_be_the_embodiments_control_rate(tmp_path, write_sources):
    write_bag(tmp_path / "bags" / "episode_0.mcap", _messages())
    with pytest.raises(
        ConfigError, match="`rate:` is 30 Hz, the embodiment spec sim_arm6 says control_rate_hz 15"
    ):
        _read(tmp_path, write_sources, rate=30)


# nightly: the bundled ingest (`make test`) reads this sample end to end, from S3, over HTTP and on Ray;
# this run adds a broken unit to the accounting
@pytest.mark.nightly
def test_sample_ingests_end_to_end_and_accounting_adds_up(tmp_path, write_sources):
    bags = tmp_path / "bags"
    bags.mkdir()
    for p in sorted((SAMPLES / "ros2_sim").glob("*.mcap")):
        (bags / p.name).write_bytes(p.read_bytes())
    whole = (bags / "episode_1.mcap").read_bytes()
    (bags / "episode_2.mcap").write_bytes(whole[: len(whole) * 2 // 3])  # a recording cut short
    sources = write_sources(
        tmp_path,
        f"""
        datasets:
          - name: ros2_sim
            kind: CE
            format: mcap
            path: bags
            embodiment: {SPEC}
            rate: 15
            keys:
              state: {STATE}
              action: {{topic: /joint_commands, field: position}}
              instruction: {{topic: /task, field: data}}
              cameras: {CAMERAS}
        """,
    )
    ingest_cli(tmp_path / "out", workers=1, sources=sources)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    d = manifest["datasets"]["ros2_sim"]
    acc = d["accounting"]
    assert {k: acc[k] for k in ("read", "written", "quarantined", "duplicates")} == {
        "read": 3,
        "written": 2,
        "quarantined": 1,
        "duplicates": 0,
    }
    assert acc["frames_read"] == acc["frames_written"] == 2 * 29 == d["samples"]
    (bad,) = [json.loads(x) for x in (tmp_path / "out" / d["quarantine"]).read_text().splitlines()]
    assert bad["source_file"] == "bags/episode_2.mcap" and bad["reason"].startswith("truncated MCAP")
