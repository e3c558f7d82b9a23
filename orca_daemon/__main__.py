"""`python -m orca_daemon` runs orcad in the foreground."""

import sys

from orca_daemon.main import main

sys.exit(main())
