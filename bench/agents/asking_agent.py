"""A command agent for bench_questions.py: output, then one question, then a result.

    asking_agent.py BYTES LINE_BYTES

It reads the prompt line, writes BYTES of plain output in lines of LINE_BYTES (newline included),
then asks one question whose text carries the wall-clock time (`time.time()`) at which the
question line was printed, waits for the answer line on stdin, and prints a `done` result.
Only the standard library, so that it starts as fast as Python can.
"""

import json
import sys
import time

BLOCK_BYTES = 65_536


def main() -> int:
    size, line_bytes = int(sys.argv[1]), int(sys.argv[2])
    sys.stdin.readline()  # the prompt line
    out = sys.stdout.buffer
    line = b"x" * (line_bytes - 1) + b"\n"
    lines_per_block = max(1, BLOCK_BYTES // line_bytes)
    block = line * lines_per_block
    written = 0
    while size - written >= len(block):
        out.write(block)
        written += len(block)
    while size - written >= line_bytes:
        out.write(line)
        written += line_bytes
    if size > written:
        out.write(b"x" * (size - written - 1) + b"\n")
    question = {"id": "q1", "question": f"printed at {time.time():.6f}"}
    asked = json.dumps({"type": "question", "questions": [question]}, separators=(",", ":"))
    out.write(asked.encode() + b"\n")
    out.flush()
    for raw in sys.stdin:
        message = json.loads(raw)
        if message.get("type") == "answer":
            answer = message["answers"]["q1"]["answers"][0]
            result = {"type": "result", "outcome": "done", "summary": f"answered {answer}"}
            out.write(json.dumps(result).encode() + b"\n")
            out.flush()
            return 0
        if message.get("type") == "cancel":
            return 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
