"""``python -m runtime.cli``: the ``logpipe`` command without its installed script."""

import sys

from . import main

sys.exit(main())
