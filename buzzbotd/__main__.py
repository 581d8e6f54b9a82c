"""`python -m buzzbotd`: the command line (buzzbotd/cli)."""

import sys

from buzzbotd.cli import main

sys.exit(main())
