"""``python -m phys_l2o.cli``: the ``phys-l2o`` command."""

import sys

from . import main

sys.exit(main())
