"""Leaves a grandchild that escapes every usual way of finding it: its parent exits (a double
fork), it calls setsid (a new session and process group) and it runs with an empty environment
(no ORCA_SESSION_ID). Writes the grandchild's pid to PID_FILE, then:

    escaper.py PID_FILE hang              waits to be cancelled
    escaper.py PID_FILE result GO_FILE    reports done, says "after result", and exits once
                                          GO_FILE exists
    escaper.py PID_FILE exit GO_FILE      exits 0 without a result once GO_FILE exists
"""

import json
import os
import sys
import time

pid_file, ending = sys.argv[1], sys.argv[2]
read_end, write_end = os.pipe()
child = os.fork()
if child == 0:
    os.close(read_end)
    if os.fork() == 0:  # the grandchild
        os.setsid()
        for descriptor in range(3):  # hold none of the session's pipes
            os.dup2(os.open(os.devnull, os.O_RDWR), descriptor)
        os.write(write_end, str(os.getpid()).encode())
        os.close(write_end)
        os.execve("/bin/sleep", ["sleep", "300"], {})
    os._exit(0)
os.close(write_end)
os.waitpid(child, 0)
grandchild = int(os.read(read_end, 64))
with open(pid_file + ".tmp", "w") as handle:
    handle.write(str(grandchild))
os.replace(pid_file + ".tmp", pid_file)
if ending == "hang":
    time.sleep(300)
    sys.exit(1)
if ending == "result":
    print(json.dumps({"type": "result", "outcome": "done", "summary": "left one"}), flush=True)
    print(json.dumps({"type": "output", "text": "after result\n"}), flush=True)
while not os.path.exists(sys.argv[3]):
    time.sleep(0.01)
