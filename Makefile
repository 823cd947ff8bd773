# Two commands on a fresh machine: `make ingest` and `make test` (both create .venv when missing).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: env ingest test test-fast test-all bench bench-scale bench-peers interop-check lint format samples schema-doc check-layout clean

env: $(STAMP)

# pip, not uv: the CPU build of torch==2.13.0 lies in pip's configured wheel folder (see STACK.md).
# constraints.txt locks every transitive version; pyproject.toml pins torch and apache-beam exactly.
# The default editable mode, on purpose: editable_mode=strict would put a link tree of the files that
# exist at install time on sys.path (a new module fails to import until the next install, and __file__
# moves under build/). Editors and basedpyright resolve vlamix.* through .links/ instead (pyproject.toml).
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "vlamix needs Python 3.11; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

ingest: $(STAMP)
	$(BIN)/vlamix ingest --sources samples/sources.yaml --out out

# `make test`: every test but the nightly ones (under 10 minutes on 2 cores), with the 25 slowest listed.
test: $(STAMP)
	$(BIN)/python -m pytest -m "not nightly" --durations=25

# Unit tests only: no end-to-end run (slow) and no nightly case (under 3 minutes on 2 cores).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not nightly"

# Everything, the nightly cases included (more kill points and seeds, the two-node Ray cluster, ...).
test-all: $(STAMP)
	$(BIN)/python -m pytest --durations=25

# Speed and memory against the baselines users would pick instead (benchmarks/RESULTS.md, results.json,
# plots/); scratch data in .bench/. Under 15 minutes on 2 cores.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run --work .bench --out benchmarks

# At lab scale (issue 20): a generated MM dataset of 1x, 4x and 16x 6,450 frames (16x: 103,200) served from
# moto's S3 server on 127.0.0.1, ingested from its s3:// URL with Beam and with Ray on a two-node local
# cluster; wall time, frames/s, driver and worker peak memory, statistics checked against numpy at 16x.
# Results in benchmarks/scale/. About 40 minutes on 2 cores; scratch data in .bench/scale.
bench-scale: $(STAMP)
	$(BIN)/python -m benchmarks.scale --work .bench/scale --out benchmarks/scale

# Optional: the loader against LeRobot's LeRobotDataset on the same episodes (benchmarks/peers/RESULTS.md).
# lerobot 0.4.x pins an older torch, so it gets its own environment, .venv-peers: several GB (the CUDA
# build of torch 2.9.1 from PyPI), built once and reused until benchmarks/peers/requirements.txt changes.
PEERS := .venv-peers
PEERS_STAMP := $(PEERS)/.installed-stamp

$(PEERS_STAMP): benchmarks/peers/requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "bench-peers needs Python 3.11; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --disable-pip-version-check -r benchmarks/peers/requirements.txt
	touch $(PEERS_STAMP)

bench-peers: $(STAMP) $(PEERS_STAMP)
	@command -v ffmpeg >/dev/null || { echo "bench-peers: ffmpeg not found; torchcodec needs FFmpeg's shared libraries: apt-get install ffmpeg"; exit 1; }
	$(BIN)/python -m benchmarks.peers.run --work .bench --out benchmarks/peers --peers-python $(PEERS)/bin/python

# Optional: the exports read by the other tools' own readers (benchmarks/interop/RESULTS.md): every robot dataset
# of out/ (`make ingest` first) exported with `vlamix export lerobot`, then loaded by LeRobot's LeRobotDataset
# (lerobot 0.4.4 in .venv-peers, the environment of bench-peers) and compared frame by frame. A few minutes.
interop-check: $(STAMP) $(PEERS_STAMP)
	@test -f out/manifest.json || { echo "interop-check: no out/manifest.json: run make ingest first"; exit 1; }
	$(BIN)/python -m benchmarks.interop.run --layout out --work .bench/interop --out benchmarks/interop --peers-python $(PEERS)/bin/python

# basedpyright reads [tool.pyright] in pyproject.toml; warnings are listed, errors fail.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/basedpyright --pythonpath $(BIN)/python

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

samples: $(STAMP)
	$(BIN)/vlamix samples generate --out samples

schema-doc: $(STAMP)
	$(BIN)/vlamix schemas doc --out docs/schemas.md

check-layout: $(STAMP)
	$(BIN)/python ../shared/tools/check-layout out

clean:
	rm -rf out .pytest_cache .bench
