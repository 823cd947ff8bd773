"""Ray Data on a real two-node cluster started on this machine (`ray start --head` and a second
`ray start --address=...`): the ingest runs there, tasks land on both nodes, and the bytes equal Beam's."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster():
    ray = str(Path(sys.executable).parent / "ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}  # a local test cluster
    port = _free_port()
    address = f"127.0.0.1:{port}"
    try:
        subprocess.run(
            [
                ray,
                "start",
                "--head",
                f"--port={port}",
                "--num-cpus=1",
                "--include-dashboard=false",
                "--disable-usage-stats",
            ],
            check=True,
            env=env,
            capture_output=True,
            timeout=180,
        )
        subprocess.run(
            [ray, "start", f"--address={address}", "--num-cpus=1"],
            check=True,
            env=env,
            capture_output=True,
            timeout=180,
        )
        yield address
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)


def _ingest(sources: Path, out: Path, *extra: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "vlamix.cli",
        "ingest",
        "--sources",
        str(sources),
        "--out",
        str(out),
        "--workers",
        "1",
        *extra,
    ]
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_node_cluster_runs_the_ingest_on_both_nodes(cluster, tmp_path):
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        textwrap.dedent(
            f"""
            datasets:
              - {{name: widowx_sim, kind: CE, format: rlds, path: {SAMPLES}/widowx_sim, embodiment: widowx_bridge}}
              - {{name: arm6_sim, kind: CE, format: rlds, path: {SAMPLES}/arm6_sim, embodiment: {SAMPLES}/embodiments/sim_arm6.yaml,
                  keys: {{state: [steps/observation/joint_positions, steps/observation/gripper_position],
                          action: [steps/action/joint_targets, steps/action/gripper],
                          instruction: steps/observation/natural_language_instruction}}}}
            """
        )
    )
    _ingest(sources, tmp_path / "ray", "--engine", "ray", "--ray-address", cluster)
    _ingest(sources, tmp_path / "beam")
    nodes = json.loads((tmp_path / "ray" / "work" / "ray_extract.json").read_text())["nodes"]
    assert len(nodes) == 2, nodes  # both nodes extracted episodes
    a = json.loads((tmp_path / "beam" / "manifest.json").read_text())
    b = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert a == b
