"""Prints lines without end (a pause of PAUSE seconds every 100 lines) until it is stopped."""

import sys
import time

pause = float(sys.argv[1])
line = "busy " + "x" * 90 + "\n"
count = 0
while True:
    sys.stdout.write(line)
    count += 1
    if count % 100 == 0:
        sys.stdout.flush()
        time.sleep(pause)
