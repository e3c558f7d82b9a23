"""The writing connection on a thread of its own, where a whole transaction runs in one call."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class DatabaseThread:
    """A sqlite3 connection that only its own thread uses: `call` runs a function with it there,
    so that several statements (the inserts of a batch and its COMMIT) cost one trip."""

    def __init__(self, executor: ThreadPoolExecutor, db: sqlite3.Connection) -> None:
        self._executor = executor
        self._db = db
        self._closed = False

    @classmethod
    async def connect(cls, path: Path, isolation_level: str | None) -> DatabaseThread:
        """Open the database at `path` on a new thread."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orca-log-writer")
        connect = functools.partial(sqlite3.connect, path, isolation_level=isolation_level)
        try:
            db = await asyncio.get_running_loop().run_in_executor(executor, connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, db)

    async def call(
        self,
        function: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`function(connection, *args, **kwargs)`, run on the connection's thread. Cancelling
        the caller does not stop it."""
        call = functools.partial(function, self._db, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def close(self) -> None:
        """Close the connection once the calls queued before are done; the thread then ends."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.call(sqlite3.Connection.close)
        finally:
            self._executor.shutdown(wait=False)
