"""`python -m vlaforge.cli ...` (what `torchrun ... -m vlaforge.cli train ...` runs)."""

import sys

from vlaforge.cli import main

sys.exit(main())
