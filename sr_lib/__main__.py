"""`python -m sr_lib ...` is `sr-lib ...`."""

import sys

from sr_lib.cli import main

sys.exit(main())
