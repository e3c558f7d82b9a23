"""Output coalescing: many small writes become few bounded events. Pure; the caller keeps time.

A chunk is flushed when it reaches `max_bytes`, or `max_delay` seconds after its first text.
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

    def add(self, text: str, now: float) -> list[str]:
        """Buffer `text`; return the chunks that are full and must be flushed now."""
        if not text:
            return []
        if self._first_at is None:
            self._first_at = now
        self._parts.append(text)
        self._size += len(text)
        chunks: list[str] = []
        while self._size >= self.max_chars:
            joined = "".join(self._parts)
            chunks.append(joined[: self.max_chars])
            rest = joined[self.max_chars :]
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

    def take(self) -> str:
        """Everything buffered, emptying the buffer."""
        text = "".join(self._parts)
        self._parts = []
        self._size = 0
        self._first_at = None
        return text
