"""``python -m bgkit.cli``."""

import sys

from bgkit.cli.app import main

sys.exit(main())
