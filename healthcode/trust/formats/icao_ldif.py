"""The ICAO PKD download: LDIF files of master lists (``icaopkd-002-*.ldif``) and of CRLs.

The ICAO Public Key Directory publishes its content as LDIF (RFC 2849): entries separated by
blank lines, long lines folded with a leading space, binary values as ``attr:: <base64>``.
Master list entries carry ``pkdMasterListContent``; the DSC/CRL file (``icaopkd-001-*.ldif``)
carries ``certificateRevocationList;binary``. Every master list inside is checked as
:mod:`.icao_master_list` checks a single one (each state signs its own; the PKD file itself has
no signature, it comes over ICAO's TLS download), and every CRL against a CSCA already trusted
or from the master lists in the same file. One entry failing refuses the whole file.
``userCertificate;binary`` entries (eMRTD document signers of passports) are not signers of
any health-code scheme: they are counted and skipped.
"""
from __future__ import annotations

import base64
import binascii

from ...errors import TrustSignatureError
from ..lists import TrustList
from . import csca_crl, icao_master_list

FORMAT = "icao-pkd-ldif"
MASTER_LIST = "pkdmasterlistcontent"
CRL = "certificaterevocationlist;binary"
CERTIFICATE = "usercertificate;binary"


def detect(raw: bytes) -> bool:
    head = raw.lstrip()[:200].lower()
    return head.startswith((b"version:", b"dn:")) or b"\ndn:" in head


def entries(raw: bytes) -> list[dict[str, list[bytes]]]:
    """RFC 2849 records: attribute name (lower case) -> values (base64 ones decoded)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("an LDIF file is UTF-8 text") from None
    blocks, lines = [], []
    for line in text.splitlines():
        if line.startswith(" ") and lines:
            lines[-1] += line[1:]  # a folded line continues the one before
        elif not line.strip():
            if lines:
                blocks.append(lines)
            lines = []
        elif not line.startswith("#"):
            lines.append(line)
    if lines:
        blocks.append(lines)
    return [_record(block) for block in blocks]


def _record(lines: list[str]) -> dict[str, list[bytes]]:
    record: dict[str, list[bytes]] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"not an LDIF line: {line[:40]!r}")
        if value.startswith(":"):
            try:
                data = base64.b64decode(value[1:].strip(), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"{name}: not base64") from None
        else:
            data = value.strip().encode()
        record.setdefault(name.strip().lower(), []).append(data)
    return record


def _dn(record: dict) -> str:
    return (record.get("dn") or [b"?"])[0].decode(errors="replace")


def _read_entry(dn: str, reader, content: bytes, found: list):
    """One master list or CRL of the directory, read against the CSCAs found so far; a
    refusal names the directory entry it came from, so an operator can find it."""
    try:
        return reader(content, trusted=tuple(found))
    except TrustSignatureError as exc:
        raise TrustSignatureError(f"{dn}: {exc.message}") from None
    except ValueError as exc:
        raise ValueError(f"{dn}: {exc}") from None


def read(raw: bytes, *, trusted=(), **_) -> TrustList:
    trust_list = TrustList(format=FORMAT)
    found = list(trusted)
    seen = set()
    lists = crls = skipped = 0
    records = entries(raw)
    for record in records:
        dn = _dn(record)
        for content in record.get(MASTER_LIST, []):
            one = _read_entry(dn, icao_master_list.read, content, found)
            lists += 1
            for entry in one.certificates:
                if entry.certificate.sha256 not in seen:
                    seen.add(entry.certificate.sha256)
                    trust_list.certificates.append(entry)
                    found.append(entry.certificate)
            trust_list.notes.extend(f"{dn}: {note}" for note in one.notes)
        skipped += len(record.get(CERTIFICATE, []))
    for record in records:
        dn = _dn(record)
        for der in record.get(CRL, []):
            one = _read_entry(dn, csca_crl.read, der, found)
            crls += 1
            trust_list.crls.extend(one.crls)
            trust_list.notes.extend(f"{dn}: {note}" for note in one.notes)
    if not lists and not crls:
        raise ValueError("an LDIF file without master lists or CRLs (pkdMasterListContent, "
                         "certificateRevocationList;binary)")
    if skipped:
        trust_list.notes.append(f"{skipped} document signer certificates (eMRTD) skipped")
    trust_list.signed_by = f"{lists} master lists and {crls} CRLs, each signature checked"
    return trust_list
