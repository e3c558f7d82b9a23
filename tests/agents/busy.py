"""Prints lines without end (a pause of PAUSE seconds every 100 lines) until it is signalled. On
SIGTERM it creates MARKERS/<its pid>.term and exits, so a test can tell SIGTERM from SIGKILL."""

import os
import signal
import sys
import time

markers, pause = sys.argv[1], float(sys.argv[2])


def on_term(signum: int, frame: object) -> None:
    with open(os.path.join(markers, f"{os.getpid()}.term"), "w"):
        pass
    os._exit(143)


signal.signal(signal.SIGTERM, on_term)
line = "busy " + "x" * 90 + "\n"
count = 0
while True:
    sys.stdout.write(line)
    count += 1
    if count % 100 == 0:
        sys.stdout.flush()
        time.sleep(pause)
