"""The trust folder (``<data dir>/trust``): loading it at start-up, importing into it.

Each list is one file, kept as downloaded (so its format is detected again at load, and a
detached signature can be checked again), next to a hidden sidecar ``.<name>.meta.json``:
``{"sha256", "format", "imported_at", "options"?, "signature"?, "signer"?, "anchor"?}``.
Files an operator copied in by hand have no sidecar: their import time is the file's mtime.
The list is renamed into place before its sidecar; a sidecar whose ``sha256`` does not match
the file (a crash between the two renames, a file replaced by hand) is ignored.

Imports are all or nothing and idempotent:

- the whole list is read and validated (and its signature checked) before anything is written;
  the file is written to a temporary name and renamed over the old one (``os.replace``), so a
  reader sees the old list or the new one, never half of either;
- the same content again (under any name) changes nothing;
- a new version under the same name replaces the old one; a list that dates itself (the VCI
  snapshot's ``time``, a CRL's ``thisUpdate``) older than the installed one is refused unless
  forced, so a replayed old list cannot roll trust back.
"""
from __future__ import annotations

import base64
import contextlib
import gc
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ConfigurationError, TrustListError, TrustSignatureError
from . import formats
from .lists import TrustList
from .signature import load_signer, verify_detached

SKIPPED_SUFFIXES = (".md", ".txt", ".sig", ".tmp")
#: formats ``trust add`` rewrites into a self-describing file (the issuer written in)
NORMALISED = {formats.jwks.FORMAT: ".jwks.json", formats.shc_crl.FORMAT: ".crl.json"}


@dataclass
class ImportResult:
    action: str  # "added", "replaced" or "unchanged"
    name: str
    trust_list: TrustList


def trust_files(path: Path) -> list[Path]:
    """A file named explicitly, or the trust files of a folder (not hidden sidecars,
    temporary files, detached signatures or notes)."""
    if not path.is_dir():
        return [path]
    return [f for f in sorted(p for p in path.rglob("*") if p.is_file())
            if not f.name.startswith(".") and not f.name.lower().endswith(SKIPPED_SUFFIXES)]


def load_into(store, path, default_issuer: str | None = None) -> None:
    """Load a trust file or folder into ``store``; CRLs after the certificates they refer to."""
    path = Path(path)
    with _collector_paused():
        for file, raw in load_order(path):
            load_file(store, file, raw, default_issuer,
                      name=str(file.relative_to(path)) if path.is_dir() else file.name)


@contextlib.contextmanager
def _collector_paused():
    """Real lists build hundreds of thousands of objects that all live as long as the
    process: cyclic garbage collections in the middle of that find nothing and cost a fifth
    of the start-up, so the collector waits until the lists are read."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_order(path: Path) -> list[tuple[Path, bytes]]:
    """The trust files under ``path`` with their bytes, CRLs after the CSCAs they need:
    other lists, then PKD LDIF files with master lists, then those without, then CRLs."""
    ranked = []
    for file in trust_files(path):
        raw = _read(file)
        if formats.icao_ldif.detect(raw):
            rank = 1 if b"pkdmasterlistcontent" in raw.lower() else 2
        elif formats.csca_crl.detect(raw) and not formats.icao_master_list.detect(raw):
            rank = 3
        else:
            rank = 0
        ranked.append((rank, file, raw))
    return [(file, raw) for _, file, raw in sorted(ranked, key=lambda r: r[0])]


def _read(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"trust file {file}: {exc}") from exc


def load_file(store, file: Path, raw: bytes, default_issuer: str | None = None, *,
              name: str | None = None) -> None:
    """Load one trust file (its sidecar's signature checked again) into ``store`` as the
    source ``name`` (default: the file's name)."""
    meta = read_meta(file, raw)
    options = dict(meta.get("options") or {})
    anchors = ()
    if meta.get("signature"):
        # checked at import, and again here: a file changed since fails loudly
        signer = load_signer(base64.b64decode(meta["signer"]))
        try:
            verify_detached(raw, base64.b64decode(meta["signature"]), signer)
        except TrustSignatureError as exc:
            raise TrustSignatureError(f"trust file {file}: {exc.message}") from exc
    if meta.get("anchor"):
        anchors = (load_signer(base64.b64decode(meta["anchor"])),)
    trust_list = formats.read(raw, name=f"trust file {file}",
                              issuer=options.get("issuer") or default_issuer,
                              scheme=options.get("scheme"), kid=options.get("kid"),
                              anchors=anchors, trusted=store.certificates())
    if meta.get("signature"):
        trust_list.signed_by = trust_list.signed_by or meta.get("signed_by")
    imported = meta.get("imported_at")
    imported_at = (datetime.fromisoformat(imported) if imported else
                   datetime.fromtimestamp(file.stat().st_mtime, timezone.utc))
    store.add_list(trust_list, source=name or file.name, imported_at=imported_at)


def meta_path(file: Path) -> Path:
    return file.with_name(f".{file.name}.meta.json")


def read_meta(file: Path, raw: bytes) -> dict:
    """The sidecar of ``file``, if it describes exactly these bytes (else ``{}``)."""
    path = meta_path(file)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(meta, dict) or meta.get("sha256") != hashlib.sha256(raw).hexdigest():
        return {}
    return meta


def import_list(folder: Path, raw: bytes, *, name: str, store, issuer: str | None = None,
                scheme: str | None = None, kid: str | None = None,
                signature: bytes | None = None, signer: bytes | None = None,
                force: bool = False) -> ImportResult:
    """Validate a list (and its signature) and install it in ``folder`` atomically.

    :param store: the trust already installed (CSCAs there may anchor a master list or CRL)
    :param signature: a detached signature over ``raw``, checked against ``signer``
    :param signer: the certificate that made ``signature``; without ``signature``, the CSCA
        (or Master List Signer) a master list or CRL must chain to
    """
    signer_cert = load_signer(signer) if signer is not None else None
    if signature is not None:
        if signer_cert is None:
            raise TrustListError("a detached signature is checked against a signer "
                                 "certificate: give --signer")
        verify_detached(raw, signature, signer_cert)
    anchors = (signer_cert,) if signer_cert is not None and signature is None else ()
    trust_list = formats.read(raw, name=name, issuer=issuer, scheme=scheme, kid=kid,
                              anchors=anchors, trusted=store.certificates())
    _no_contradiction(trust_list, name, issuer, scheme)
    if signature is None and signer_cert is not None and trust_list.format not in (
            formats.icao_master_list.FORMAT, formats.csca_crl.FORMAT):
        raise TrustListError(f"{name}: --signer without --signature: a {trust_list.format} "
                             f"carries no signature of its own")
    payload, options = raw, {}
    suffix = NORMALISED.get(trust_list.format)
    if suffix and signature is None:
        payload = _normalised(trust_list, raw, issuer, scheme, kid)
        name = name.split(".")[0] + suffix
    elif suffix:
        options = {k: v for k, v in (("issuer", issuer), ("scheme", scheme), ("kid", kid)) if v}
    digest = hashlib.sha256(payload).hexdigest()
    for existing in trust_files(folder) if folder.is_dir() else []:
        if hashlib.sha256(existing.read_bytes()).hexdigest() == digest:
            return ImportResult("unchanged", existing.name, trust_list)
    target = folder / name
    action = "added"
    if target.exists():
        action = "replaced"
        installed = store.sources.get(name)
        if (not force and installed is not None and installed.retrieved_at
                and trust_list.retrieved_at and trust_list.retrieved_at < installed.retrieved_at):
            raise TrustListError(f"{name}: this list is dated {trust_list.retrieved_at:%Y-%m-%d}, "
                                 f"older than the installed one "
                                 f"({installed.retrieved_at:%Y-%m-%d}); --force to roll back")
    meta = {"sha256": digest, "format": trust_list.format,
            "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if options:
        meta["options"] = options
    if signature is not None:
        meta.update(signature=base64.b64encode(signature).decode(),
                    signer=base64.b64encode(signer_cert.der).decode(),
                    signed_by=signer_cert.subject)
        trust_list.signed_by = signer_cert.subject
    elif anchors:
        meta["anchor"] = base64.b64encode(signer_cert.der).decode()
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(target, payload)
    write_atomically(meta_path(target), json.dumps(meta, indent=2).encode())
    return ImportResult(action, name, trust_list)


def _no_contradiction(trust_list: TrustList, name: str, issuer, scheme) -> None:
    """A file that names its issuer (or scheme) and an operator who names another: refuse
    rather than guess which one was meant."""
    if trust_list.format == formats.jwks.FORMAT:
        entry = trust_list.issuers[0]
        named = (entry.iss, entry.scheme)
    elif trust_list.format == formats.shc_crl.FORMAT:
        named = (trust_list.revocations[0].issuer, None)
    else:
        return
    if issuer and named[0] != issuer:
        raise TrustListError(f"{name}: the file names the issuer {named[0]}, not {issuer}")
    if scheme and named[1] and named[1] != scheme:
        raise TrustListError(f"{name}: the file names the scheme {named[1]}, not {scheme}")


def _normalised(trust_list: TrustList, raw: bytes, issuer, scheme, kid) -> bytes:
    """A JWK set or SHC revocation list with its issuer written in, so it reads alone."""
    data = json.loads(raw)
    if trust_list.format == formats.jwks.FORMAT:
        entry = trust_list.issuers[0]
        out = {"issuer": entry.iss, "scheme": entry.scheme, "keys": data["keys"]}
    else:
        shc = trust_list.revocations[0]
        out = {"issuer": shc.issuer, "kid": shc.kid, "crl": shc.crl}
    return json.dumps({k: v for k, v in out.items() if v is not None}, indent=2,
                      ensure_ascii=False).encode()


def write_atomically(target: Path, payload: bytes) -> None:
    """Write to a temporary file beside ``target``, flush it to disk, rename it over."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove(folder: Path, name: str) -> bool:
    """Forget a list: its file and its sidecar."""
    target = folder / name
    if not target.is_file():
        return False
    target.unlink()
    meta = meta_path(target)
    if meta.exists():
        meta.unlink()
    return True
