"""Deflate pieces that join into one gzip member, and the CRC-32 arithmetic that joins them."""

from __future__ import annotations

import gzip
import random
import zlib

from hypothesis import given
from hypothesis import strategies as st

from exporter.metrics.deflate import (
    DeflatedText,
    JoinedText,
    crc32_combine,
    gzip_member,
    texts_of,
)

TEXTS = st.lists(st.binary(max_size=3000), max_size=8)


def single_member(body: bytes) -> bytes:
    """The text of ``body``, which must be exactly one whole gzip member."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text = decompressor.decompress(body) + decompressor.flush()
    assert decompressor.eof, "the gzip member is cut short"
    assert decompressor.unused_data == b"", "more than one gzip member"
    return text


@given(st.binary(max_size=5000), st.binary(max_size=5000))
def test_combined_crcs_equal_the_crc_of_the_joined_text(first: bytes, second: bytes) -> None:
    assert crc32_combine(zlib.crc32(first), zlib.crc32(second), len(second)) == zlib.crc32(
        first + second
    )


def test_combined_crcs_hold_for_pieces_of_megabytes() -> None:
    generator = random.Random(7)
    first, second = generator.randbytes(3_000_001), generator.randbytes(2_500_003)

    combined = crc32_combine(zlib.crc32(first), zlib.crc32(second), len(second))

    assert combined == zlib.crc32(first + second)


@given(TEXTS, st.binary(max_size=3000))
def test_pieces_compressed_apart_are_one_gzip_member_with_the_last_part(
    texts: list[bytes], last: bytes
) -> None:
    pieces = [DeflatedText.of(text) for text in texts]

    body = b"".join(gzip_member(pieces, last))

    assert single_member(body) == b"".join(texts) + last
    assert gzip.decompress(body) == b"".join(texts) + last


@given(TEXTS)
def test_joined_pieces_keep_the_crc_and_length_of_their_text(texts: list[bytes]) -> None:
    joined = JoinedText.of([DeflatedText.of(text) for text in texts])

    assert joined.crc == zlib.crc32(b"".join(texts))
    assert joined.length == sum(map(len, texts))


def test_a_piece_holds_its_text_compressed_and_ends_on_a_sync_flush() -> None:
    text = b"".join(f"line {n}\n".encode() for n in range(10_000))

    piece = DeflatedText.of(text)

    assert piece.text() == text
    assert (piece.crc, piece.length) == (zlib.crc32(text), len(text))
    assert len(piece.deflated) < len(text) // 3
    # A sync flush ends with an empty stored block: a deflate stream that can go on.
    assert piece.deflated.endswith(b"\x00\x00\xff\xff")


def test_texts_of_pieces_are_given_one_piece_at_a_time_without_empty_ones() -> None:
    pieces = [DeflatedText.of(b"a\n"), DeflatedText.of(b""), DeflatedText.of(b"b\n")]

    assert list(texts_of(pieces)) == [b"a\n", b"b\n"]


def test_the_gzip_header_is_plain_and_the_trailer_holds_crc_and_length() -> None:
    header, _, _, trailer = gzip_member([DeflatedText.of(b"x" * 70_000)], b"end\n")

    assert header[:3] == b"\x1f\x8b\x08" and header[3] == 0  # deflate, no optional fields
    text = b"x" * 70_000 + b"end\n"
    assert trailer == zlib.crc32(text).to_bytes(4, "little") + len(text).to_bytes(4, "little")
