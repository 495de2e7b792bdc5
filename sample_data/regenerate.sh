#!/bin/sh
# Rebuild the phantom studies of sample_data/ and their SHA256SUMS.
#
# The generator is deterministic: this gives byte-identical files on every run
# (tests/phantom/test_sample_data.py regenerates both studies and compares checksums).
# Run from anywhere, with bonelesion installed (e.g. `make install`, then
# `BONELESION="$PWD/.venv/bin/python -m bonelesion" sh sample_data/regenerate.sh`).
set -eu
BONELESION=${BONELESION:-bonelesion}
cd "$(dirname "$0")"
rm -rf spine_phantom thoracolumbar_phantom
$BONELESION -q phantom spine_phantom --vendor siemens --seed 0
$BONELESION -q phantom thoracolumbar_phantom --anatomy spine --small --vendor siemens --seed 0
find spine_phantom thoracolumbar_phantom -type f | LC_ALL=C sort | xargs sha256sum > SHA256SUMS
