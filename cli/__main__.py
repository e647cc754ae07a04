"""``python -m cli``: the ``zhasr`` command (torchrun and accelerate launch start it this way)."""

import sys

from cli.main import main

sys.exit(main())
