"""Output coalescing: many small writes become few bounded events. Pure; the caller keeps time.

A chunk is flushed when it reaches `max_bytes`, or `max_delay` seconds after its first text.
Each chunk carries the stream position (`at`) of the last text it holds whole, if any.
"""

from __future__ import annotations


class OutputCoalescer:
    """Buffers text for one output stream and says when to flush it."""

    def __init__(self, max_chars: int = 16_384, max_delay: float = 0.05) -> None:
        self.max_chars = max_chars
        self.max_delay = max_delay
        self._parts: list[str] = []
        self._size = 0
        self._first_at: float | None = None
        self._at: int | None = None
        """The position of the last text added whole."""
        self.scheduled: float | None = None
        """The deadline the caller last arranged a flush for (its own bookkeeping)."""

    def add(self, text: str, now: float, at: int | None = None) -> list[tuple[str, int | None]]:
        """Buffer `text` (which ends at stream position `at`); return the chunks that are full
        and must be flushed now, with their positions: a chunk that ends inside `text` has the
        position before it."""
        if not text:
            return []
        if self._first_at is None:
            self._first_at = now
        before = self._at
        self._at = at if at is not None else before
        self._parts.append(text)
        self._size += len(text)
        chunks: list[tuple[str, int | None]] = []
        while self._size >= self.max_chars:
            joined = "".join(self._parts)
            rest = joined[self.max_chars :]
            chunks.append((joined[: self.max_chars], before if rest else self._at))
            self._parts = [rest] if rest else []
            self._size = len(rest)
            self._first_at = now if rest else None
        return chunks

    def deadline(self) -> float | None:
        """When the buffered text must be flushed at the latest, or None when empty."""
        return None if self._first_at is None else self._first_at + self.max_delay

    def due(self, now: float) -> bool:
        deadline = self.deadline()
        return deadline is not None and now >= deadline

    def take(self) -> tuple[str, int | None]:
        """Everything buffered, with its position, emptying the buffer."""
        text = "".join(self._parts)
        self._parts = []
        self._size = 0
        self._first_at = None
        return text, self._at
