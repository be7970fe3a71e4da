"""The EU DCC adapter's base45 decoder accepts and refuses exactly what the base45 package does.

RFC 9285: pairs of bytes become three characters ``c + 45 d + 2025 e``, a last single byte two;
a length of 3k + 1, a triple above 0xFFFF, a final pair above 0xFF or a character outside the
45-character alphabet is not base45.
"""
from __future__ import annotations

import base45
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapping.b45 import ALPHABET, b45decode


def reference(text):
    try:
        return base45.b45decode(text)
    except (ValueError, TypeError):
        return ValueError


def ours(text):
    try:
        return b45decode(text)
    except ValueError:
        return ValueError


def test_the_alphabet_is_the_rfc_one():
    assert ALPHABET == base45.BASE45_CHARSET


def test_every_pair_and_triple_agrees_with_the_reference():
    pairs = [a + b for a in ALPHABET for b in ALPHABET]
    mismatches = [text for text in pairs + [p + c for p in pairs for c in ALPHABET]
                  if ours(text) != reference(text)]
    assert mismatches == []
    assert ours("FGW") == b"\xff\xff" and ours("GGW") is ValueError  # 65,535 and 65,536
    assert ours("U5") == b"\xff" and ours("V5") is ValueError  # 255 and 256


@pytest.mark.parametrize("text, expected", [
    ("", b""), ("QED8WEX0", b"ietf!"), ("%69 VD92EX0", b"Hello!!"), ("BB8\n\n", b"AB"),
    ("BB8", b"AB"), (b"BB8", b"AB"), ("BB", ValueError), ("BB8B", ValueError),
    ("bb8", ValueError), ("BB8\u0661", ValueError), ("BB8é", ValueError), ("\nBB8", ValueError),
    ("BB8 \n", ValueError),
])
def test_examples(text, expected):
    assert ours(text) == expected == reference(text)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_what_the_encoder_writes_decodes_back(data):
    assert b45decode(base45.b45encode(data).decode()) == data


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=ALPHABET + "abz\n\t\u00e9\u0661\x00", max_size=60))
def test_random_text_agrees_with_the_reference(text):
    assert ours(text) == reference(text)
    assert ours(text.encode()) == reference(text.encode())
