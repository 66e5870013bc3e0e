"""The SSE splitter and parser: events come out whole however the bytes are chunked (every cut
point, byte by byte), with ``\\n``, ``\\r\\n`` and ``\\r`` line ends, comments and multi-line data."""

from __future__ import annotations

from pathlib import Path

import pytest

from payi_notebook.providers.sse import SSESplitter, parse_event

FIXTURES = Path(__file__).parent / "fixtures"
STREAMS = sorted(p.name for p in FIXTURES.glob("*.sse"))
MIXED = (
    b": keep-alive comment\n\n"
    b"event: message_start\ndata: {\"a\": 1}\n\n"
    b"data: first line\r\ndata: second line\r\n\r\n"
    b"id: 7\rdata:no-space\r\r"
    b"data:  two spaces\n\n"
)


def events_of(chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    splitter = SSESplitter()
    raws = [raw for chunk in chunks for raw in splitter.split(chunk)]
    return raws, splitter.tail()


@pytest.mark.parametrize("name", STREAMS)
def test_recorded_streams_split_the_same_at_every_cut_point(name: str) -> None:
    stream = (FIXTURES / name).read_bytes()
    whole, tail = events_of([stream])
    assert tail == b"" and b"".join(whole) == stream and len(whole) >= 2
    for cut in range(1, len(stream)):
        assert events_of([stream[:cut], stream[cut:]]) == (whole, b""), f"cut at byte {cut}"


def test_byte_by_byte_feeding_gives_the_same_events() -> None:
    whole, _ = events_of([MIXED])
    assert events_of([MIXED[i : i + 1] for i in range(len(MIXED))]) == (whole, b"")
    assert len(whole) == 5


def test_fields_comments_and_line_ends() -> None:
    parsed = [parse_event(raw) for raw in events_of([MIXED])[0]]
    assert [(e.event, e.data) for e in parsed] == [
        (None, ""),  # a comment alone is an event with no data
        ("message_start", '{"a": 1}'),
        (None, "first line\nsecond line"),  # data lines join with \n, \r\n ends stripped
        (None, "no-space"),  # \r alone ends lines too; the space after the colon is optional
        (None, " two spaces"),  # only one leading space is dropped
    ]
    assert parsed[1].raw == b"event: message_start\ndata: {\"a\": 1}\n\n"


def test_an_unfinished_event_waits_and_is_left_as_the_tail() -> None:
    splitter = SSESplitter()
    assert splitter.split(b"data: {\"partial\":") == []
    assert splitter.split(b" true}\r\n\r") == []  # three of the four bytes of a \r\n\r\n boundary
    assert splitter.split(b"\ndata: next") == [b"data: {\"partial\": true}\r\n\r\n"]
    assert splitter.tail() == b"data: next"
    assert splitter.tail() == b""


def test_undecodable_bytes_do_not_stop_parsing() -> None:
    event = parse_event(b"event: x\ndata: caf\xc3\n\n")
    assert event.event == "x" and event.data.startswith("caf")
