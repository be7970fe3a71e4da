"""The mapping adapter contract (DESIGN.md, **contract**): one scheme, one class.

An adapter turns the text inside a QR code of its scheme into a verified canonical
:class:`~healthcode.record.Record` (``decode``), and, where the scheme can issue, a record back
into that scheme's text (``encode``). Every failure is a :class:`CodeError` whose ``reason`` is
one of :data:`~healthcode.errors.CODE_REASONS`, never another exception: scanned input is
hostile, and the HTTP layer turns reasons into answers.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timezone

from healthcode.errors import CODE_REASONS, CodeError
from healthcode.record import Record, record_class

__all__ = ["MappingAdapter", "Decoded", "Signer", "CodeError", "CODE_REASONS", "utcnow",
           "Warnings"]

#: Default cap on the text of one scanned code. A QR code holds at most 7,089 digits; a
#: multi-chunk SHC may hold a few such codes.
MAX_CODE_LENGTH = 32 * 1024


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Signer:
    """What an adapter needs to issue a code in its scheme on our behalf.

    :param private_key: a ``cryptography`` private key (EC P-256 for ES256)
    :param kid: the key id our verifiers and partners know the key by
    :param issuer: our issuer id (an ``https://`` URL for SHC)
    :param algorithm: JOSE/COSE algorithm name
    :param certificate: DER signer certificate, for X.509 schemes (EU DCC)
    :param country: issuing country or region code, for schemes that carry one
    """

    private_key: object
    kid: str
    issuer: str
    algorithm: str = "ES256"
    certificate: bytes | None = None
    country: str | None = None


@record_class  # a frozen dataclass, built once per scan (see record_class)
class Decoded:
    """A verified code: the canonical record and what identified its signer."""

    record: Record
    scheme: str
    issuer: str | None = None
    kid: str | None = None
    #: scheme-specific facts worth showing in a trace (certificate type, chunk count, ...)
    details: dict = field(default_factory=dict)
    #: deviations of this genuine code from the letter of its scheme, ``{"code", "message"}``
    #: each (see :class:`Warnings`); never about authenticity, which is never relaxed
    warnings: tuple = ()


class Warnings:
    """What an adapter noticed while accepting a code its scheme's reference verifiers accept.

    Real issuers stray from the letter of their scheme (a birth date ``1979-00-00``, an ``sc``
    without an offset, bytes after a DEFLATE stream). Where the deviation does not touch
    authenticity (signature, the key's binding to its issuer, validity windows, revocation),
    the code is accepted and the deviation reported, so staff and operators see it and a
    genuine code never turns into ``malformed``. ``code`` is stable and machine-readable;
    ``message`` is for people and never holds personal data.
    """

    __slots__ = ("_items",)

    def __init__(self):
        self._items: dict[tuple[str, str], None] = {}

    def add(self, code: str, message: str) -> None:
        self._items.setdefault((code, message), None)  # the same deviation is said once

    def codes(self) -> list[str]:
        return [code for code, _ in self._items]

    def __bool__(self) -> bool:
        return bool(self._items)

    def as_tuple(self) -> tuple:
        if not self._items:  # the common case: a code that follows the letter
            return ()
        return tuple([{"code": code, "message": message} for code, message in self._items])


class MappingAdapter(ABC):
    """One scheme family's decoder, verifier and (optionally) encoder.

    Registered under the entry-point group ``healthcode.mappings``; the entry-point name is the
    scheme name and is set on the instance as :attr:`scheme`.
    """

    #: the scheme name; set from the entry point when loaded through the registry
    scheme: str = ""
    #: whether :meth:`encode` can issue codes in this scheme
    can_encode: bool = False
    #: tie-breaker when several adapters detect the same text (higher wins)
    specificity: int = 0
    #: whether codes of this scheme are signed with our key ring (JWT schemes partners trust)
    signs_with_ring: bool = False

    @abstractmethod
    def detect(self, text: str) -> bool:
        """Cheaply tell whether ``text`` looks like a code of this scheme (no verification).

        :param text: the text a QR code holds (several chunks joined by newlines)
        :returns: ``True`` if this adapter should be asked to decode it
        """

    @abstractmethod
    def decode(self, text: str, *, trust, at: datetime | None = None) -> Decoded:
        """Decode and verify ``text``; raise :class:`CodeError` if it fails.

        :param text: the QR text
        :param trust: a :class:`healthcode.trust.TrustStore` with the keys to accept
        :param at: the instant to check validity at (default: now, UTC)
        :returns: a :class:`Decoded` holding the canonical record
        """

    def encode(self, record: Record, *, signer: Signer, at: datetime | None = None) -> str:
        """Issue ``record`` as a code of this scheme, signed by ``signer``.

        :raises CodeError: ``unsupported_scheme`` when the scheme cannot issue, or
            ``policy_refused`` when the record lacks facts the scheme must carry
        """
        raise CodeError("unsupported_scheme", f"the {self.scheme} scheme cannot issue codes")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} scheme={self.scheme!r}>"


def check_size(text, limit: int = MAX_CODE_LENGTH) -> str:
    """Refuse non-text and oversized input before any parsing."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise CodeError("malformed", "the code is not text") from None
    if not isinstance(text, str):
        raise CodeError("malformed", "the code is not text")
    if len(text) > limit:
        raise CodeError("too_large", f"the code is longer than {limit} characters")
    return text.strip()
