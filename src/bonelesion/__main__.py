"""``python -m bonelesion``."""

from bonelesion.cli.main import run

run()
