"""Output coalescing (orca_daemon/coalesce.py) and line splitting (orca_daemon/sessions.py).

Both are pure: the coalescer is given explicit times, the splitter explicit byte chunks.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from orca_daemon.sessions.coalesce import OutputCoalescer
from orca_daemon.sessions.lines import LineSplitter

# --------------------------------------------------------------------------- OutputCoalescer


def texts(chunks: list[tuple[str, int | None]]) -> list[str]:
    return [text for text, _ in chunks]


def test_a_chunk_carries_the_position_of_the_last_text_it_holds_whole() -> None:
    """What a re-attached orcad reads on from: never past text that is not yet in a chunk."""
    buffer = OutputCoalescer(max_chars=4, max_delay=1.0)
    assert buffer.add("ab", now=0.0, at=3) == []
    assert buffer.add("cdefgh", now=0.0, at=10) == [("abcd", 3), ("efgh", 10)]
    assert buffer.add("ijklm", now=0.0, at=16) == [("ijkl", 10)]
    assert buffer.add("note", now=0.0) == [("mnot", 16)]
    assert buffer.take() == ("e", 16)


def test_an_empty_coalescer_has_no_deadline_and_is_never_due() -> None:
    buffer = OutputCoalescer(max_chars=10, max_delay=0.05)
    assert buffer.deadline() is None
    assert not buffer.due(1e12)
    assert buffer.take()[0] == ""


def test_small_writes_are_buffered_until_the_deadline_set_by_the_first_one() -> None:
    buffer = OutputCoalescer(max_chars=100, max_delay=0.05)
    assert buffer.add("a", now=10.0) == []
    assert buffer.add("b", now=10.04) == []  # a later write does not push the deadline back
    assert buffer.deadline() == 10.0 + 0.05
    assert not buffer.due(10.049)
    assert buffer.due(10.05)
    assert buffer.due(11.0)
    assert buffer.take()[0] == "ab"


def test_take_empties_the_buffer_and_clears_the_deadline() -> None:
    buffer = OutputCoalescer(max_chars=100, max_delay=1.0)
    buffer.add("hello", now=5.0)
    assert buffer.take()[0] == "hello"
    assert buffer.take()[0] == ""
    assert buffer.deadline() is None
    assert not buffer.due(100.0)
    # The next write starts a new deadline from its own time.
    buffer.add("again", now=20.0)
    assert buffer.deadline() == 21.0


def test_empty_text_neither_buffers_nor_starts_a_deadline() -> None:
    buffer = OutputCoalescer(max_chars=4, max_delay=1.0)
    assert buffer.add("", now=1.0) == []
    assert buffer.deadline() is None


def test_a_buffer_that_reaches_max_chars_is_flushed_at_once() -> None:
    buffer = OutputCoalescer(max_chars=4, max_delay=1.0)
    assert buffer.add("ab", now=1.0) == []
    assert texts(buffer.add("cd", now=1.5)) == ["abcd"]
    assert buffer.deadline() is None
    assert buffer.take()[0] == ""


def test_a_long_write_is_cut_into_max_char_chunks_and_the_rest_waits() -> None:
    buffer = OutputCoalescer(max_chars=4, max_delay=1.0)
    buffer.add("x", now=1.0)
    assert texts(buffer.add("abcdefghij", now=2.0)) == ["xabc", "defg"]
    # The rest came with the write at t=2.0, so its deadline counts from then.
    assert buffer.deadline() == 3.0
    assert buffer.take()[0] == "hij"


def test_chunks_are_bounded_in_characters_not_bytes() -> None:
    buffer = OutputCoalescer(max_chars=3, max_delay=1.0)
    assert texts(buffer.add("€€€€", now=0.0)) == ["€€€"]
    assert buffer.take()[0] == "€"


@settings(max_examples=100, deadline=None)
@given(
    max_chars=st.integers(1, 20),
    writes=st.lists(st.tuples(st.text(max_size=30), st.booleans()), max_size=30),
)
def test_coalescing_loses_nothing_reorders_nothing_and_never_exceeds_max_chars(
    max_chars: int, writes: list[tuple[str, bool]]
) -> None:
    buffer = OutputCoalescer(max_chars=max_chars, max_delay=0.05)
    flushed: list[str] = []
    now = 0.0
    for text, flush_after in writes:
        now += 0.01
        flushed += texts(buffer.add(text, now))
        assert buffer.deadline() is None or buffer.deadline() <= now + 0.05
        if flush_after or buffer.due(now):
            rest, _ = buffer.take()
            if rest:
                flushed.append(rest)
    rest, _ = buffer.take()
    if rest:
        flushed.append(rest)
    assert "".join(flushed) == "".join(text for text, _ in writes)
    assert all(0 < len(chunk) <= max_chars for chunk in flushed)


# --------------------------------------------------------------------------- LineSplitter


def pairs(lines: list[tuple[str, bool, int]]) -> list[tuple[str, bool]]:
    return [(text, complete) for text, complete, _ in lines]


def test_each_line_says_where_in_the_stream_it_ends_in_bytes_whatever_its_text() -> None:
    """The ends count bytes as written (a re-attach reads on from one), not decoded text: a
    multi-byte character, an invalid byte, an overlong line's pieces, a line split across reads."""
    data = "a€\n".encode() + b"\xff\xfe\n\n" + b"abcdefghij\n" + b"tail"
    expected = [(5, True), (8, True), (9, True), (13, False), (17, False), (20, False)]
    for cut in range(len(data) + 1):
        splitter = LineSplitter(max_bytes=4, start=100)
        got = splitter.feed(data[:cut]) + splitter.feed(data[cut:]) + splitter.finish()
        assert [(end - 100, complete) for _, complete, end in got] == [*expected, (24, True)]


def test_complete_lines_come_out_without_their_newlines() -> None:
    splitter = LineSplitter(max_bytes=100)
    assert pairs(splitter.feed(b"one\ntwo\n\nthree\n")) == [
        ("one", True),
        ("two", True),
        ("", True),
        ("three", True),
    ]
    assert pairs(splitter.finish()) == []


def test_a_line_split_across_feeds_comes_out_whole() -> None:
    splitter = LineSplitter(max_bytes=100)
    assert pairs(splitter.feed(b"hel")) == []
    assert pairs(splitter.feed(b"lo\nwor")) == [("hello", True)]
    assert pairs(splitter.feed(b"ld")) == []
    assert pairs(splitter.feed(b"\n")) == [("world", True)]


def test_an_unterminated_last_line_comes_out_at_finish() -> None:
    splitter = LineSplitter(max_bytes=100)
    assert pairs(splitter.feed(b"done\npartial")) == [("done", True)]
    assert pairs(splitter.finish()) == [("partial", True)]
    assert pairs(splitter.finish()) == []


def test_a_line_of_exactly_max_bytes_is_complete() -> None:
    splitter = LineSplitter(max_bytes=4)
    assert pairs(splitter.feed(b"abcd\n")) == [("abcd", True)]


def test_an_overlong_line_comes_out_in_max_byte_pieces_with_its_tail_as_raw_output() -> None:
    splitter = LineSplitter(max_bytes=4)
    assert pairs(splitter.feed(b"abcdefghij\nok\n")) == [
        ("abcd", False),
        ("efgh", False),
        ("ij\n", False),
        ("ok", True),
    ]


def test_an_overlong_line_without_a_newline_is_emitted_as_it_grows() -> None:
    splitter = LineSplitter(max_bytes=4)
    assert pairs(splitter.feed(b"abc")) == []
    assert pairs(splitter.feed(b"defghij")) == [("abcd", False), ("efgh", False)]
    assert pairs(splitter.feed(b"k\n")) == [("ijk\n", False)]
    assert pairs(splitter.feed(b"ok\n")) == [("ok", True)]


def test_a_multibyte_character_split_across_feeds_decodes_whole() -> None:
    euro = "€".encode()  # three bytes
    splitter = LineSplitter(max_bytes=100)
    assert pairs(splitter.feed(b"price: " + euro[:1])) == []
    assert pairs(splitter.feed(euro[1:2])) == []
    assert pairs(splitter.feed(euro[2:] + b"5\n")) == [("price: €5", True)]


def test_a_multibyte_character_cut_by_an_overlong_piece_is_not_mangled() -> None:
    splitter = LineSplitter(max_bytes=4)
    pieces = pairs(splitter.feed("ab€cd\n".encode()))
    assert "".join(text for text, _ in pieces) == "ab€cd\n"
    assert [complete for _, complete in pieces] == [False, False]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    splitter = LineSplitter(max_bytes=100)
    assert pairs(splitter.feed(b"bad \xff byte\n\xc3\x28ok\n")) == [
        ("bad \ufffd byte", True),
        ("\ufffd(ok", True),
    ]


def test_a_truncated_character_at_the_end_of_a_line_stays_in_that_line() -> None:
    """A line ending in the first bytes of a multibyte character is complete at its newline:
    the broken character is replaced in that line, and the next line is not affected."""
    splitter = LineSplitter(max_bytes=100)
    assert pairs(splitter.feed(b"ab\xe2\ncd\n")) == [("ab\ufffd", True), ("cd", True)]

    splitter = LineSplitter(max_bytes=100)
    # The bytes after the newline must not be glued onto the previous line's broken character.
    assert pairs(splitter.feed(b"x\xe2\x82\n\xacy\n")) == [("x\ufffd", True), ("\ufffdy", True)]


def test_a_truncated_character_at_the_end_of_the_stream_is_replaced_at_finish() -> None:
    splitter = LineSplitter(max_bytes=100)
    assert pairs(splitter.feed(b"x\xe2\x82")) == []
    assert pairs(splitter.finish()) == [("x\ufffd", True)]


@settings(max_examples=100, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from("ab\n€é✓ "), max_size=60),
    cuts=st.lists(st.integers(0, 200), max_size=10),
)
def test_valid_utf8_comes_out_the_same_however_it_is_fed(text: str, cuts: list[int]) -> None:
    data = text.encode()
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    splitter = LineSplitter(max_bytes=1000)
    lines: list[tuple[str, bool]] = []
    for start, end in itertools.pairwise(bounds):
        lines += pairs(splitter.feed(data[start:end]))
    lines += pairs(splitter.finish())
    expected = text.split("\n")
    if expected[-1] == "":
        expected.pop()
    assert lines == [(line, True) for line in expected]


def as_output(pieces: list[tuple[str, bool, int]]) -> tuple[str, list[int]]:
    """What a pump makes of a splitter's pieces: the output text (a complete line with its
    newline) and where each piece ends."""
    text = "".join(piece + "\n" if complete else piece for piece, complete, _ in pieces)
    return text, [end for _, _, end in pieces]


@settings(max_examples=300)
@given(
    st.lists(
        st.lists(st.sampled_from([b"a", b"\n", b"{", b" ", b"\xc3\xa9", b"\xc3", b"x" * 7])).map(
            b"".join
        ),
        max_size=12,
    )
)
def test_plain_output_taken_whole_reads_as_line_by_line_would(chunks: list[bytes]) -> None:
    """Issue 14: plain output (no `{` in it) goes to the log in blocks, without work per line:
    the same text, ending at the same offsets, as line by line."""
    by_line, by_block = LineSplitter(max_bytes=16), LineSplitter(max_bytes=16)
    lines: list[tuple[str, bool, int]] = []
    blocks: list[tuple[str, bool, int]] = []
    for chunk in chunks:
        lines += by_line.feed(chunk)
        blocks += by_block.feed_plain(chunk, b"{")
        assert by_block.offset == by_line.offset
    lines += by_line.finish()
    blocks += by_block.finish()
    assert as_output(blocks)[0] == as_output(lines)[0]
    assert set(as_output(blocks)[1]) <= set(as_output(lines)[1])
    assert by_block.offset == by_line.offset


def test_output_is_read_line_by_line_from_the_first_line_with_a_brace() -> None:
    result = b'{"type": "result"}'
    assert LineSplitter(100).feed_plain(b"plain\nmore\n" + result + b"\nafter\n", b"{") == [
        ("plain\nmore\n", False, 11),
        (result.decode(), True, 30),
        ("after", True, 36),
    ]
    splitter = LineSplitter(max_bytes=100)
    assert splitter.feed_plain(b"one\ntwo\nthr", b"{") == [("one\ntwo\n", False, 8)]
    assert splitter.feed_plain(b"ee {\n", b"{") == [("three {", True, 16)]  # begun before
