"""`python -m orca_client.cli`: the `orca` command."""

import sys

from orca_client.cli import main

sys.exit(main())
