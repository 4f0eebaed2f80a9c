#!/usr/bin/env bash
# One-time set-up on a fresh machine: a venv in .venv with the pinned CPU torch, the
# package with its cpu+dev extras, and RecBole's wheel for the embedded MovieLens-100K.
# Safe to re-run. GPU hosts: install your CUDA torch first and use the [gpu] extra.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[cpu,dev]"
# only the data files are used (read without importing RecBole): no dependencies
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps recbole==1.2.1
