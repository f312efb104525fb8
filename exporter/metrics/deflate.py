"""Text compressed in pieces that join into one gzip member.

The /metrics body is kept compressed, in pieces rendered apart (a batch of jobs, a family's
header) and reused from one response to the next. A gzip stream may be several members
one after another, but many readers stop after the first (curl, browsers, httpx), so a
response must be one member. Each piece is therefore raw deflate ended with a sync flush:
it stops on a byte boundary, with no final block, so pieces compressed apart can be laid
side by side as one deflate stream. A response is a gzip header, the pieces, a last piece
that ends the stream, and a trailer of the whole text's CRC-32 and length; the CRC-32 is
combined from the pieces' own (:func:`crc32_combine`), as pigz joins parallel parts.

>>> parts = [DeflatedText.of(b"a 1\\n"), DeflatedText.of(b"b 2\\n")]
>>> body = b"".join(gzip_member(parts, b"c 3\\n"))
>>> zlib.decompress(body, GZIP_WBITS)
b'a 1\\nb 2\\nc 3\\n'
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

GZIP_LEVEL = 6
# zlib's window bits for a raw deflate stream, and for one inside a gzip header and trailer.
RAW_WBITS = -zlib.MAX_WBITS
GZIP_WBITS = 16 + zlib.MAX_WBITS
# RFC 1952: magic, deflate, no flags, no modification time, no extra flags, unknown OS.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_CRC32_POLYNOMIAL = 0xEDB88320  # reflected, as zlib's CRC-32 is
_X_TO_THE_0 = 1 << 31  # the polynomial 1, with bit 31 the coefficient of x^0


@dataclass(frozen=True)
class DeflatedText:
    """Text as raw deflate ended with a sync flush, with the text's CRC-32 and length."""

    deflated: bytes
    crc: int
    length: int

    @classmethod
    def of(cls, text: bytes) -> DeflatedText:
        """``text`` compressed into a piece that can be followed by any other."""
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, RAW_WBITS)
        deflated = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return cls(deflated, zlib.crc32(text), len(text))

    def text(self) -> bytes:
        """The text again."""
        return zlib.decompressobj(RAW_WBITS).decompress(self.deflated)


@dataclass(frozen=True)
class JoinedText:
    """Pieces laid end to end: their deflate streams joined, the text's CRC-32 and length."""

    deflated: bytes
    crc: int
    length: int

    @classmethod
    def of(cls, pieces: Sequence[DeflatedText]) -> JoinedText:
        """``pieces`` joined, in order.

        >>> joined = JoinedText.of([DeflatedText.of(b"x"), DeflatedText.of(b"yz")])
        >>> joined.crc == zlib.crc32(b"xyz"), joined.length
        (True, 3)
        """
        crc = 0
        for piece in pieces:
            crc = crc32_combine(crc, piece.crc, piece.length)
        deflated = b"".join(piece.deflated for piece in pieces)
        return cls(deflated, crc, sum(piece.length for piece in pieces))


def gzip_member(pieces: Sequence[DeflatedText] | JoinedText, last: bytes) -> tuple[bytes, ...]:
    """One gzip member of the pieces' text followed by ``last``, as chunks to send in order.

    ``last`` is compressed here, and ends the deflate stream; its CRC-32 continues the
    pieces' own, so nothing else is computed again.
    """
    joined = pieces if isinstance(pieces, JoinedText) else JoinedText.of(pieces)
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, RAW_WBITS)
    ending = compressor.compress(last) + compressor.flush(zlib.Z_FINISH)
    crc = zlib.crc32(last, joined.crc)
    length = (joined.length + len(last)) & 0xFFFFFFFF  # ISIZE is the length modulo 2^32
    trailer = crc.to_bytes(4, "little") + length.to_bytes(4, "little")
    return (GZIP_HEADER, joined.deflated, ending, trailer)


def texts_of(pieces: Iterable[DeflatedText]) -> Iterator[bytes]:
    """The pieces' text, one piece at a time, for a reader that does not take gzip."""
    for piece in pieces:
        text = piece.text()
        if text:
            yield text


def _multiply_modulo_p(a: int, b: int) -> int:
    """a(x) * b(x) modulo the CRC-32 polynomial, in zlib's reflected bit order."""
    product = 0
    bit = _X_TO_THE_0
    while a:
        if a & bit:
            product ^= b
            a ^= bit
        bit >>= 1
        b = (b >> 1) ^ _CRC32_POLYNOMIAL if b & 1 else b >> 1
    return product


def _powers_of_x() -> tuple[int, ...]:
    """x^(2^k) modulo the polynomial, for k = 0..31."""
    powers = [_X_TO_THE_0 >> 1]  # x^1
    for _ in range(31):
        powers.append(_multiply_modulo_p(powers[-1], powers[-1]))
    return tuple(powers)


_X_TO_THE_2_TO_THE = _powers_of_x()


def _x_to_the_8n(n: int) -> int:
    """x^(8n) modulo the polynomial: what n zero bytes multiply a CRC by."""
    power = _X_TO_THE_0
    k = 3  # 8n = n * 2^3
    while n:
        if n & 1:
            power = _multiply_modulo_p(_X_TO_THE_2_TO_THE[k % 32], power)
        n >>= 1
        k += 1
    return power


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """The CRC-32 of A followed by B, from A's CRC-32, B's and B's length (zlib's crc32_combine).

    >>> crc32_combine(zlib.crc32(b"hello "), zlib.crc32(b"world"), 5) == zlib.crc32(b"hello world")
    True
    """
    return _multiply_modulo_p(_x_to_the_8n(length2), crc1) ^ crc2
