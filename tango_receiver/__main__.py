"""``python -m tango_receiver``: the ``tango-receiver`` command."""

import sys

from .cli import main

sys.exit(main())
