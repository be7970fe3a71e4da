"""Base45 (RFC 9285) decoding for the EU DCC hot path, with the big-integer arithmetic in C.

The ``base45`` package decodes one character at a time in Python: on a DCC of ~1,500
characters that is about a third of a whole decode+verify, more than the signature check.
This decoder does the same job with a handful of C-level operations: ``bytes.translate``
turns characters into digit values, each digit of every triple goes into its own 32-bit lane
of one big integer, ``c + 45 d + 2025 e`` is then two small multiplications and two additions
over all triples at once (no lane can carry into the next: the largest value is
44 * 2071 = 91,124 < 2^32), and the lanes' low two bytes are the output.

It accepts and refuses exactly what ``base45.b45decode`` 0.4 does (tests/mapping/test_b45.py
compares the two on every triple and pair and on random text): trailing newlines of a ``str``
are dropped, bytes are decoded as UTF-8, every character must be in the alphabet, a length of
3k + 1 is refused, a triple above 0xFFFF or a final pair above 0xFF is refused. Every refusal
is a ``ValueError``.
"""
from __future__ import annotations

__all__ = ["ALPHABET", "b45decode"]

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
#: byte -> its digit value, or 255 for a byte outside the alphabet
_VALUES = bytes(ALPHABET.index(chr(b)) if chr(b) in ALPHABET else 255 for b in range(256))


def b45decode(text) -> bytes:
    """Base45 to bytes; ``ValueError`` for anything that is not base45."""
    if isinstance(text, str):
        raw = text.rstrip("\n").encode("ascii")  # a non-ASCII character: UnicodeEncodeError
    elif isinstance(text, bytes):
        raw = text.decode().encode("ascii")
    else:
        raise ValueError("base45 is text")
    values = raw.translate(_VALUES)
    if 255 in values:
        raise ValueError("a character outside the base45 alphabet")
    triples, rest = divmod(len(values), 3)
    if rest == 1:
        raise ValueError("a base45 length of 3k + 1")
    end = 3 * triples
    lanes = bytearray(4 * triples)  # one big-endian 32-bit lane per triple
    lanes[3::4] = values[0:end:3]
    low = int.from_bytes(lanes, "big")
    lanes[3::4] = values[1:end:3]
    middle = int.from_bytes(lanes, "big")
    lanes[3::4] = values[2:end:3]
    high = int.from_bytes(lanes, "big")
    words = (low + 45 * middle + 2025 * high).to_bytes(4 * triples, "big")
    if words[1::4].count(0) != triples:  # byte 0 of a lane is always 0 (91,124 < 2^24)
        raise ValueError("a base45 triple above 0xFFFF")
    out = bytearray(2 * triples + (rest >> 1))
    out[0:2 * triples:2] = words[2::4]
    out[1:2 * triples:2] = words[3::4]
    if rest:
        last = values[-2] + 45 * values[-1]
        if last > 0xFF:
            raise ValueError("a final base45 pair above 0xFF")
        out[-1] = last
    return bytes(out)
