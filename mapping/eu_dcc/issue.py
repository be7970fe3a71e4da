"""What issuing a DCC needs besides the COSE envelope: UVCIs, ICAO 9303 names, our DSC and key."""
from __future__ import annotations

import functools
import re
import secrets
import unicodedata

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from healthcode.certs import Certificate, load_certificate
from healthcode.errors import ConfigurationError

from ..base import CodeError
from .cose import _ECDSA_SHA256, _PSS_32, _SHA256, ALG_ES256, ALG_PS256
from .payload import DISEASE_COVID

_UVCI_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/:"
#: ICAO Doc 9303 part 3 transliterations that are more than dropping a diacritic.
_ICAO_SPECIAL = {"Ä": "AE", "Æ": "AE", "Å": "AA", "Ö": "OE", "Ø": "OE", "Œ": "OE", "Ü": "UE",
                 "ẞ": "SS", "Þ": "TH", "Ð": "D", "Đ": "D", "Ħ": "H", "Ł": "L", "Ŀ": "L",
                 "Ĳ": "IJ", "Ŋ": "N", "Ŧ": "T", "ı": "I", "ĸ": "K"}


def luhn_mod_n(text: str, alphabet: str = _UVCI_ALPHABET) -> str:
    """The Luhn mod N check character of a UVCI (eHealth Network guidelines, Annex 2)."""
    n = len(alphabet)
    factor, total = 2, 0
    for char in reversed(text):
        addend = alphabet.index(char) * factor
        total += addend // n + addend % n
        factor = 3 - factor
    return alphabet[(n - total % n) % n]


def uvci(country: str) -> str:
    """A fresh unique certificate identifier, ``URN:UVCI:01:<country>:<random>#<check>``."""
    body = f"URN:UVCI:01:{country}:{secrets.token_hex(13).upper()}"
    return f"{body}#{luhn_mod_n(body)}"


def icao_transliterate(name: str | None) -> str | None:
    """A name as ICAO 9303 machine-readable text (A-Z and ``<``), None if nothing Latin is left.

    Umlauts and ligatures expand (Gößinger -> GOESSINGER), other diacritics are dropped,
    spaces and hyphens become ``<``, other characters (apostrophes, non-Latin script) vanish.
    """
    if not name:
        return None
    out = []
    for char in name.upper():
        if char in _ICAO_SPECIAL:
            out.append(_ICAO_SPECIAL[char])
        elif char in " -<,":
            out.append("<")
        else:
            out.extend(c for c in unicodedata.normalize("NFD", char) if "A" <= c <= "Z")
    text = re.sub("<+", "<", "".join(out)).strip("<")[:80].rstrip("<")
    return text if re.search("[A-Z]", text) else None


def _full_date(value: str | None, what: str) -> str:
    if not value or len(value) != 10:
        raise CodeError("policy_refused", f"a DCC needs the full date of {what}")
    return value


def _require(entry: dict, what: str) -> dict:
    """Refuse an entry that lacks a field the DCC schema makes mandatory."""
    missing = sorted(k for k, v in entry.items() if v is None)
    if missing:
        raise CodeError("policy_refused",
                        f"the {what} lacks what a DCC must carry: {', '.join(missing)}")
    return entry


def _disease_code(disease: str | None) -> str:
    if disease is None or disease.strip().upper() in ("COVID-19", "COVID19", DISEASE_COVID):
        return DISEASE_COVID
    raise CodeError("policy_refused", f"a DCC only covers COVID-19, not {disease!r}")


def _signer_certificate(der: bytes | None) -> Certificate:
    if not der:
        raise ConfigurationError("the EU DCC signer needs a DSC (Signer.certificate)")
    return _load_signer_certificate(bytes(der))


@functools.lru_cache(maxsize=16)
def _load_signer_certificate(der: bytes) -> Certificate:
    """Parse our own DSC once (it is the same for every code we issue)."""
    try:
        return load_certificate(der)
    except ValueError as exc:
        raise ConfigurationError(f"the EU DCC signer certificate is unreadable: {exc}") from exc


def _algorithm(private_key) -> int:
    """The COSE algorithm of our signing key: ES256 for EC P-256, PS256 for RSA."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ConfigurationError("an EU DCC EC signing key must be on P-256")
        return ALG_ES256
    if isinstance(private_key, rsa.RSAPrivateKey):
        return ALG_PS256
    raise ConfigurationError("an EU DCC signing key must be EC P-256 or RSA")


def _sign(private_key, alg: int, signed: bytes) -> bytes:
    """The raw COSE signature: r||s (32 bytes each) for ES256, the PSS block for PS256."""
    if alg == ALG_ES256:
        r, s = decode_dss_signature(private_key.sign(signed, _ECDSA_SHA256))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return private_key.sign(signed, _PSS_32, _SHA256)
