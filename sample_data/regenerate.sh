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
rm -rf spine_phantom thoracolumbar_phantom lumbar_thin_ct
$BONELESION -q phantom spine_phantom --vendor siemens --seed 0
$BONELESION -q phantom thoracolumbar_phantom --anatomy spine --small --vendor siemens --seed 0
$BONELESION -q phantom lumbar_thin_ct --anatomy spine --small --vendor siemens --seed 7 --matrix 512 --fov-mm 512 --slice-thickness-mm 2 --slice-spacing-mm 2 --psf-fwhm-mm 0.8 --noise-sd-hu 13 --s-range-mm -485 -300 --crop 160 210 --compressed
find spine_phantom thoracolumbar_phantom lumbar_thin_ct -type f | LC_ALL=C sort | xargs sha256sum > SHA256SUMS
