"""``python -m bgkit``: the same CLI as the ``bgkit`` command."""

import sys

from bgkit.cli import main

sys.exit(main())
