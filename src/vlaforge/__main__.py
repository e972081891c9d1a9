import sys

from vlaforge.cli import main

sys.exit(main())
