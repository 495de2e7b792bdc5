"""``python -m bonelesion``."""

import sys

from bonelesion.cli import main

sys.exit(main())
