"""``python -m langswarm.core.memory._cli``: the ``langswarm-memory`` command."""

import sys

from . import main

sys.exit(main())
