import sys

from buzzbotd.cli import main

sys.exit(main())
