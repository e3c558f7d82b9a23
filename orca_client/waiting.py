"""`--wait`: follow a run to its end and say, on stderr, what happens in it (workers, tasks, a
question and how to answer it); on a terminal, offer to answer a question right there."""

from __future__ import annotations

import contextlib
import select
import sys
from typing import TYPE_CHECKING, cast

from orca_client import render_events
from orca_client.terminal_text import one_line

if TYPE_CHECKING:
    from collections.abc import Generator

    from orca_client.client import Client
    from orca_client.wire import EventRecord

POLL_SECONDS = 0.5
"""While a question is offered on the terminal: how often the run's new events are read."""


def say(text: str) -> None:
    """A line of news on stderr, made inert (it holds text from agents)."""
    print(one_line(f"orca: {text}"), file=sys.stderr, flush=True)


class RunWaiter:
    """Follows one run from its first event until it ends.

    Its output goes to stdout and stderr (`stream_output`), what happens to stderr. With `ask`
    (stdin and stdout are a terminal), a pending question stops the subscription and is
    offered: Enter asks it here (`answering.ask_on_terminal`), Ctrl-D leaves it to `orca
    answer`; meanwhile the run's events are read every `POLL_SECONDS`, so an answer given
    elsewhere, a withdrawn question or the run's end is seen, and nothing is held open.
    """

    def __init__(self, connection: Client, run_id: str, *, stream_output: bool, ask: bool) -> None:
        self.connection = connection
        self.run_id = run_id
        self.stream_output = stream_output
        self.ask = ask
        self.progress = render_events.RunProgress(run_id)
        self.position = 0
        self.ended = False
        self.declined: set[tuple[str, str]] = set()
        """Requests the person chose not to answer here: (session id, request id)."""

    def wait(self) -> None:
        """Return once the run has ended."""
        while not self.ended:
            self._follow()
            if not self.ended:
                self._offer()

    def _handle(self, record: EventRecord) -> None:
        self.position = record.position
        event = render_events.decode(record)
        if self.stream_output:
            render_events.write_output(record, event, as_json=False)
        for line in self.progress.lines(event):
            say(line)
        if render_events.ends_run(event):
            self.ended = True

    def _follow(self) -> None:
        """Follow until the run ends or a question can be offered."""
        events = self.connection.follow(after=self.position, run_id=self.run_id, on_reconnect=say)
        with contextlib.closing(cast("Generator[EventRecord]", events)):  # ends the subscription
            for record in events:
                self._handle(record)
                if self.ended or self._offerable():
                    return

    def _offerable(self) -> list[str]:
        if not (self.ask and _in_foreground()):  # a background job must not touch the terminal
            return []
        pending = self.progress.pending
        return [s for s, (request, _) in pending.items() if (s, request) not in self.declined]

    def _offer(self) -> None:
        _discard_typed_ahead()
        say("press Enter to answer here (Ctrl-D: leave it to `orca answer`)")
        while not self.ended and self._offerable():
            if not select.select([sys.stdin], [], [], POLL_SECONDS)[0]:
                self._catch_up()
                continue
            if not sys.stdin.readline():  # Ctrl-D
                pending = self.progress.pending
                self.declined.update((s, pending[s][0]) for s in self._offerable())
                say("not asking here; the run waits for `orca answer`")
                return
            self._answer_here(self._offerable()[0])

    def _catch_up(self) -> None:
        from orca_client.wire import ReadEvents

        page = self.connection.request(
            ReadEvents(after=self.position, limit=1000, run_id=self.run_id)
        )
        for record in page.events:
            self._handle(record)
            if self.ended:
                return

    def _answer_here(self, session_id: str) -> None:
        from orca_client import answering
        from orca_client.client import RequestFailed
        from orca_client.wire import Answer

        try:
            session_id, request_id, answers = answering.ask_on_terminal(
                self.connection, self.run_id, session_id, self.progress.pending[session_id][0]
            )
        except (KeyboardInterrupt, EOFError):
            print(file=sys.stderr)
            say("not answered; press Enter to answer here (Ctrl-C again stops waiting)")
            return
        except (ValueError, SystemExit) as exc:  # the request went away before it was asked
            say(f"not answered: {exc}")
            return
        try:  # the answer's event says it was taken, with the others
            self.connection.request(
                Answer(
                    run_id=self.run_id,
                    answers=answers,
                    request_id=request_id,
                    session_id=session_id,
                    answered_by=answering.who(),
                )
            )
        except RequestFailed as exc:
            say(f"not answered: {exc}")


def _in_foreground() -> bool:
    """Whether this process is in the terminal's foreground job (a background one that reads
    it, or flushes its input, is stopped by the shell's job control)."""
    import os

    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except OSError:
        return False


def _discard_typed_ahead() -> None:
    """Forget keys pressed before the offer, so an earlier Enter does not take it up."""
    import termios

    with contextlib.suppress(termios.error, OSError):
        termios.tcflush(sys.stdin.fileno(), termios.TCIFLUSH)
