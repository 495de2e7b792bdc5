"""``python -m fuzz`` (with ``tests`` on ``PYTHONPATH``): run a campaign."""

import sys

from fuzz.campaign import main

sys.exit(main())
