#!/usr/bin/env python3
"""An example command agent that tries, and reports failure with an error at its terminal
marker, even though its process exits with status 0: success is what the agent reports."""

import json
import sys


def main() -> int:
    print(json.dumps({"type": "output", "text": "running the test suite...\n"}), flush=True)
    print(json.dumps({"type": "output", "text": "3 passed, 1 failed\n"}), flush=True)
    print(
        json.dumps({"type": "result", "outcome": "failed", "error": "1 test failed: test_parse"}),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
