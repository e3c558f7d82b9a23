"""The output clock (orca_daemon/sessions/output.py): one clock sends the due output chunks of
many sessions together, never after their deadline, and loses or reorders nothing."""

from __future__ import annotations

import time

import anyio

from orca_daemon.sessions.output import OutputBuffer, OutputClock, StreamName

Sent = list[tuple[str, StreamName, str, int | None]]


class Collector:
    """Keeps what the buffers send; `wait_for(n)` returns once n chunks came."""

    def __init__(self) -> None:
        self.sent: Sent = []
        self._came = anyio.Event()

    def buffer(self, name: str, clock: OutputClock, delay: float) -> OutputBuffer:
        def write(stream: StreamName, text: str, at: int | None) -> None:
            self.sent.append((name, stream, text, at))
            self._came.set()

        return OutputBuffer(write, chunk_chars=16, flush_seconds=delay, clock=clock)

    async def wait_for(self, count: int) -> None:
        with anyio.fail_after(10):
            while len(self.sent) < count:
                await self._came.wait()
                self._came = anyio.Event()


def buffer_of(name: str, clock: OutputClock, sent: Sent, delay: float) -> OutputBuffer:
    collector = Collector()
    collector.sent = sent
    return collector.buffer(name, clock, delay)


def test_a_tick_sends_every_chunk_due_by_its_horizon_and_nothing_later() -> None:
    clock = OutputClock.for_delay(1.0)
    sent: Sent = []
    a, b = buffer_of("a", clock, sent, 1.0), buffer_of("b", clock, sent, 1.0)
    before = time.monotonic()
    a.add("stdout", "one\n", 4)
    b.add("stderr", "two\n", 4)
    after = time.monotonic()
    clock.flush_due(before + 0.5)  # both are due a second after they came
    assert sent == []
    clock.flush_due(after + 1.0)
    assert sent == [("a", "stdout", "one\n", 4), ("b", "stderr", "two\n", 4)]
    clock.flush_due(after + 10.0)  # nothing is sent twice
    assert len(sent) == 2


def test_a_full_chunk_goes_out_at_once_and_a_flush_sends_the_rest() -> None:
    clock = OutputClock.for_delay(1.0)
    sent: Sent = []
    a = buffer_of("a", clock, sent, 1.0)
    a.add("stdout", "x" * 20, 20)
    assert sent == [("a", "stdout", "x" * 16, None)]
    a.add("orca", "a note\n")
    a.flush()
    assert sent[1:] == [("a", "stdout", "xxxx", 20), ("a", "orca", "a note\n", None)]
    clock.flush_due(time.monotonic() + 10.0)  # the entries scheduled for them are stale now
    assert len(sent) == 3


async def test_the_clock_groups_the_chunks_of_sessions_that_print_at_different_times() -> None:
    """Twenty sessions print one line each, 10 ms apart; the clock ticks at most every
    gather seconds (here 50 ms), so far fewer ticks than lines send them all, in order."""
    clock = OutputClock.for_delay(0.2)
    sent: Sent = []
    ticks: list[int] = []
    flush_due = clock.flush_due

    def counted(horizon: float) -> None:
        before = len(sent)
        flush_due(horizon)
        if len(sent) > before:
            ticks.append(len(sent) - before)

    clock.flush_due = counted  # type: ignore[method-assign]
    collector = Collector()
    collector.sent = sent
    buffers = [collector.buffer(f"s{index}", clock, 0.2) for index in range(20)]
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(clock.run)
        for index, buffer in enumerate(buffers):
            buffer.add("stdout", f"line {index}\n", index)
            await anyio.sleep(0.01)
        await collector.wait_for(len(buffers))
        tasks.cancel_scope.cancel()
    assert [name for name, *_ in sent] == [f"s{index}" for index in range(20)]
    assert sum(ticks) == 20
    assert len(ticks) <= 10, ticks


async def test_a_chunk_scheduled_while_the_clock_idles_wakes_it() -> None:
    clock = OutputClock.for_delay(0.05)
    collector = Collector()
    sent = collector.sent
    a = collector.buffer("a", clock, 0.05)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(clock.run)
        for round in range(3):
            await anyio.sleep(0.1)  # the clock has nothing to do: it waits
            a.add("stdout", f"round {round}\n", round)
            await collector.wait_for(round + 1)
        tasks.cancel_scope.cancel()
    assert [text for *_, text, _ in sent] == ["round 0\n", "round 1\n", "round 2\n"]
