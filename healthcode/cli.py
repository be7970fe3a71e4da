"""The ``healthcode`` command (DESIGN.md, **contract** for the command names).

It reads the same environment configuration as the service. Secrets are printed only where the
operator asked for one (a new bearer token, on the last line), never logged.
"""
from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from . import bootstrap, config as config_module
from .errors import ConfigurationError, HealthCodeError


def _config() -> dict:
    cfg = config_module.load_env()
    config_module.validate(cfg)
    return cfg


def _ring(cfg):
    from .keys import KeyRing

    return KeyRing(config_module.data_path(cfg, "keys"))


def _fail(message: str, code: int = 1):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group()
@click.version_option(package_name="healthcode")
def main():
    """Signed, dynamic QR health codes: operate keys, credentials and the service."""


# -- keys ------------------------------------------------------------------------------------

@main.group()
def keys():
    """The ES256 signing key ring in <data dir>/keys."""


@keys.command("generate")
@click.option("--activate/--no-activate", default=None,
              help="Make it the signing key (default: only if there is none).")
def keys_generate(activate):
    """Create a key."""
    key = _ring(_config()).generate(activate=activate)
    click.echo(key.kid)


@keys.command("rotate")
def keys_rotate():
    """Create a key and sign with it from now on; older keys keep verifying until retired."""
    key = _ring(_config()).rotate()
    click.echo(key.kid)


@keys.command("list")
def keys_list():
    """The keys, which one signs, and which are retired."""
    ring = _ring(_config())
    active = ring.active.kid if ring.has_active() else None
    for key in ring.keys():
        state = "active" if key.kid == active else ("retired" if key.retired else "verify-only")
        created = datetime.fromtimestamp(key.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        click.echo(f"{key.kid}\t{state}\t{created}")


@keys.command("retire")
@click.argument("kid")
def keys_retire(kid):
    """Stop accepting codes signed with KID (it is then left out of the JWKS)."""
    try:
        _ring(_config()).retire(kid)
    except ConfigurationError as exc:
        _fail(exc.message)
    click.echo(f"retired {kid}")


@main.command("init")
def init():
    """Prepare the data dir every host will share: subject and session secrets (unless set in
    the environment) and a first signing key. Existing ones are kept. Run it once, in one
    place; with REDIS_URL set, a host never makes these up on its own."""
    cfg = _config()
    prepared = bootstrap.initialise(cfg)
    data_dir = Path(cfg["DATA_DIR"]).resolve()
    for name in sorted(k for k in prepared["created"] if k.endswith(".secret")):
        click.echo(f"created {data_dir / name}")
    if prepared["created"].get("key"):
        click.echo(f"created signing key {prepared['created']['key']} in {data_dir / 'keys'}")
    click.echo(f"{data_dir} is ready; signing key {prepared['ring'].active.kid}")


# -- credentials -----------------------------------------------------------------------------

def _store(cfg):
    from . import bootstrap
    from .store import RedisStore, store_options

    try:
        prepared = bootstrap.prepare(cfg)
    except ConfigurationError as exc:
        _fail(exc.message)
    return RedisStore.from_url(cfg["REDIS_URL"], timeout=2.0,
                               **store_options(cfg, prepared["cipher"]))


@main.group()
def tokens():
    """Bearer credentials for the API, one role each."""


@tokens.command("create")
@click.option("--role", required=True,
              type=click.Choice(["authority", "checkpoint", "partner", "resident"]))
@click.option("--subject", help="The subject id a resident credential is bound to "
                                "(write --subject=ID if the id starts with '-').")
@click.option("--label", help="Who holds it, for the audit trail (no personal data).")
def tokens_create(role, subject, label):
    """Create a credential; the bearer token is the last line printed."""
    try:
        credential, token = _store(_config()).create_credential(role, subject, label)
    except (ValueError, HealthCodeError) as exc:
        _fail(str(exc))
    click.echo(f"created {role} credential {credential.id}"
               + (f" for subject {subject}" if subject else ""))
    click.echo(token)


@tokens.command("list")
def tokens_list():
    """Credentials (ids, roles and labels; secrets are not stored)."""
    for cred in _store(_config()).credentials():
        click.echo(f"{cred['id']}\t{cred['role']}\t{cred.get('subject', '-')}\t"
                   f"{cred.get('label', '')}")


@tokens.command("revoke")
@click.argument("credential_id")
def tokens_revoke(credential_id):
    """Delete a credential (workers forget it within CREDENTIAL_CACHE_SECONDS)."""
    if not _store(_config()).revoke_credential(credential_id):
        _fail(f"no credential {credential_id}")
    click.echo(f"revoked {credential_id}")


# -- residents ---------------------------------------------------------------------------------

@main.group()
def residents():
    """Enrolled residents."""


@residents.command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, allow_dash=False))
@click.option("--batch", type=click.IntRange(1, 1000), default=1000, show_default=True,
              help="Residents per round of pipelined writes.")
@click.option("--rejects", type=click.File("w", encoding="utf-8"),
              help="Write rejected lines here as JSON lines (default: stderr, as text).")
@click.option("--label", default="import", show_default=True,
              help="Who imports, for the audit trail (recorded as operator:<label>).")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: when stderr is a terminal).")
@click.option("--jobs", type=click.IntRange(1, 64), default=None,
              help="Processes that parse and seal lines (default: the CPU count).")
def residents_import(source, batch, rejects, label, progress, jobs):
    """Enroll every line of SOURCE (JSON lines, the POST /api/v1/residents body per line).

    Lines are validated as single enrollments are. Rejected lines are reported by line
    number and reason; residents already enrolled are skipped, so re-running resumes an
    interrupted import. Exits 1 if any line was rejected.
    """
    import time as clock

    from . import bulk
    from .subject import load_secret

    cfg = _config()
    store = _store(cfg)
    secret = load_secret(cfg["SUBJECT_SECRET"], cfg["DATA_DIR"])

    def rejected(number, error):
        if rejects:
            rejects.write(json.dumps({"line": number, **error}, ensure_ascii=False) + "\n")
        else:
            click.echo(f"line {number}: {error.get('error')}: {error.get('message')}", err=True)

    size = Path(source).stat().st_size
    show = sys.stderr.isatty() if progress is None else progress
    started = clock.perf_counter()
    with open(source, "rb") as stream, click.progressbar(
            length=size, label="importing", file=sys.stderr if show else open(os.devnull, "w"),
            show_eta=True) as bar:
        try:
            counts = bulk.import_stream(store, stream, f"operator:{label}", secret, batch=batch,
                                        jobs=jobs or os.cpu_count() or 1,
                                        progress=bar.update, rejected=rejected)
        except HealthCodeError as exc:
            _fail(f"{exc.message} (re-run to resume: enrolled residents are skipped)")
    seconds = clock.perf_counter() - started
    click.echo(f"enrolled {counts['enrolled']}, already enrolled {counts['already_enrolled']}"
               f" (skipped), rejected {counts['rejected']} of {counts['lines']} lines in "
               f"{seconds:.1f} s ({counts['lines'] / max(seconds, 1e-9):.0f} lines/s)")
    if counts["rejected"]:
        sys.exit(1)


# -- audit trail -----------------------------------------------------------------------------

def _ms(text: str | None, option: str) -> int | None:
    from .record import parse_time

    if text is None:
        return None
    try:
        return int(parse_time(text, option).timestamp() * 1000)
    except HealthCodeError as exc:
        _fail(exc.message)


@main.group()
def audit():
    """The audit trail (ids and codes only), merged from its shards in time order."""


@audit.command("tail")
@click.option("-n", "count", type=click.IntRange(1, 100_000), default=20, show_default=True)
def audit_tail(count):
    """The newest entries, oldest of them first, as JSON lines."""
    try:
        entries = _store(_config()).audit_entries(count)
    except HealthCodeError as exc:
        _fail(exc.message)
    for entry in reversed(entries):
        click.echo(json.dumps(entry, ensure_ascii=False))


@audit.command("export")
@click.option("--since", help="ISO 8601 time (inclusive); default: the oldest entry.")
@click.option("--until", help="ISO 8601 time (inclusive); default: now.")
@click.option("--out", type=click.File("w", encoding="utf-8"), default="-",
              help="Write here (default stdout).")
def audit_export(since, until, out):
    """Every entry in a window as JSON lines, oldest first: archive before trimming."""
    store = _store(_config())
    count = 0
    try:
        for entry in store.audit_export(_ms(since, "--since"), _ms(until, "--until")):
            out.write(json.dumps(entry, ensure_ascii=False) + "\n")
            count += 1
    except HealthCodeError as exc:
        _fail(exc.message)
    click.echo(f"exported {count} entries", err=True)


@audit.command("trim")
def audit_trim():
    """Drop entries older than HEALTHCODE_AUDIT_RETENTION_DAYS (exact XTRIM MINID)."""
    cfg = _config()
    if not cfg["AUDIT_RETENTION_DAYS"]:
        click.echo("HEALTHCODE_AUDIT_RETENTION_DAYS is 0: entries are kept for ever")
        return
    try:
        removed = _store(cfg).audit_trim()
    except HealthCodeError as exc:
        _fail(exc.message)
    click.echo(f"removed {sum(removed.values())} entries older than "
               f"{cfg['AUDIT_RETENTION_DAYS']} days")


# -- records at rest -------------------------------------------------------------------------

@main.group()
def records():
    """The key ring that seals stored records (<data dir>/record.keys)."""


@records.command("keys")
def records_keys():
    """The record key ids; the newest seals new records."""
    from .recordcrypt import load_cipher

    cfg = _config()
    cipher = load_cipher(cfg["RECORD_KEY"], cfg["DATA_DIR"])
    for kid in cipher.kids:
        click.echo(f"{kid}\t{'newest' if kid == cipher.newest else 'opens older records'}")


@records.command("rotate-key")
def records_rotate_key():
    """Add a new newest record key; restart the service, then run `records rekey`."""
    from .recordcrypt import add_key

    cfg = _config()
    if cfg["RECORD_KEY"]:
        _fail("HEALTHCODE_RECORD_KEY is set: add the new key to it (<id>:<base64url key>)")
    click.echo(add_key(cfg["DATA_DIR"]))


@records.command("rekey")
def records_rekey():
    """Re-seal every record and history under the newest key (visits every primary)."""
    store = _store(_config())
    changed = total = 0
    try:
        for key in store.sealed_keys():
            total += 1
            changed += store.rekey(key)
    except HealthCodeError as exc:
        _fail(exc.message)
    click.echo(f"re-sealed {changed} of {total} keys under record key {store.cipher.newest}; "
               f"older keys may now be removed from the ring")


# -- partners: trust, mapping files, policies ------------------------------------------------
# Files live in the data dir; a running service reads them at start-up, so restart it (or send
# gunicorn's master a HUP) after a change. Each file is validated before it is copied in.

def _folder(cfg, name: str) -> Path:
    folder = config_module.data_path(cfg, name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _remove(folder: str, file_name: str, what: str) -> None:
    """Delete one file the operator added to a data-dir folder."""
    path = _folder(_config(), folder) / _check_name(file_name)
    if not path.is_file():
        _fail(f"no {what}")
    path.unlink()
    click.echo(f"removed {what}; restart the service to apply")


def _check_name(name: str) -> str:
    import re
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name or ""):
        _fail(f"{name!r} is not a usable file name (letters, digits, '.', '_', '-')")
    return name


@main.group()
def trust():
    """Partner keys and certificates we accept (<data dir>/trust)."""


@trust.command("add")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", help="File name in the trust folder (default: from the source).")
@click.option("--issuer", help="Issuer the JWK set or revocation list belongs to "
                               "(required unless the file names it).")
@click.option("--scheme", help="Limit a JWK set to one scheme (e.g. mo, shc).")
@click.option("--kid", help="For a revocation list: the key id it applies to.")
def trust_add(source, name, issuer, scheme, kid):
    """Trust a JWK set, a certificate (PEM/DER) or an SHC revocation list."""
    from .trust import TrustStore

    cfg = _config()
    source = Path(source)
    raw = source.read_bytes()
    folder = _folder(cfg, "trust")
    store = TrustStore()
    try:
        if source.suffix.lower() == ".json":
            data = json.loads(raw)
            if "keys" in data:
                data = {"issuer": issuer or data.get("issuer"),
                        "scheme": scheme or data.get("scheme"), "keys": data["keys"]}
                store.add_jwks(data, issuer=data["issuer"], scheme=data["scheme"])
                suffix = ".jwks.json"
            elif "rids" in data or "crl" in data:
                crl = data.get("crl", data)
                data = {"issuer": issuer or data.get("issuer"),
                        "kid": kid or data.get("kid") or crl.get("kid"), "crl": crl}
                store.add_revocation_list(crl, issuer=data["issuer"], kid=data["kid"])
                suffix = ".crl.json"
            else:
                raise ValueError("neither a JWK set nor a revocation list")
            target = folder / (_check_name(name or source.name.split(".")[0]) + suffix)
            payload = json.dumps({k: v for k, v in data.items() if v is not None}, indent=2,
                                 ensure_ascii=False).encode()
        else:
            store.add_x509(raw)
            target = folder / _check_name(name or source.name)
            payload = raw
    except (ValueError, KeyError, TypeError) as exc:
        _fail(f"{source}: {exc}")
    target.write_bytes(payload)
    click.echo(f"added {target.name}; restart the service to apply")


@trust.command("list")
def trust_list():
    """What the trust folder holds."""
    from .trust import TrustStore

    cfg = _config()
    for path in sorted(_folder(cfg, "trust").iterdir()):
        if path.name.startswith("."):
            continue
        store = TrustStore()
        try:
            store.load_path(path)
        except HealthCodeError as exc:
            click.echo(f"{path.name}\tUNREADABLE\t{exc.message}")
            continue
        for key in store.keys():
            click.echo(f"{path.name}\tjwk\t{key.issuer}\t{key.kid}\t{key.scheme or '*'}")
        for cert in store.certificates():
            click.echo(f"{path.name}\tx509\t{cert.subject}\t{cert.not_after:%Y-%m-%d}")
        for crl in store.to_dict()["revocations"]:
            click.echo(f"{path.name}\tcrl\t{crl['issuer']}\t{crl['kid']}\t{crl['count']} rids")


@trust.command("remove")
@click.argument("name")
def trust_remove(name):
    """Stop trusting a file added before (by its name in the trust folder)."""
    _remove("trust", name, f"trust file {name}")


@main.group()
def mappings():
    """Partner mapping files (<data dir>/mappings), one per partner scheme."""


@mappings.command("add")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
def mappings_add(source):
    """Validate a partner mapping file and install it as mappings/<scheme>.toml."""
    from mapping.partner_jwt import load_mapping
    from .policy import Policy

    cfg = _config()
    try:
        mapping = load_mapping(Path(source))
        Policy.from_table(mapping.scheme, mapping.policy or {}, source=str(source))
    except HealthCodeError as exc:
        _fail(exc.message)
    target = _folder(cfg, "mappings") / f"{mapping.scheme}.toml"
    target.write_bytes(Path(source).read_bytes())
    click.echo(f"added partner {mapping.scheme} ({mapping.name}); trust its issuers' keys with "
               f"`healthcode trust add`, then restart the service")


@mappings.command("list")
def mappings_list():
    from mapping.partner_jwt import load_mapping

    for path in sorted(_folder(_config(), "mappings").glob("*.toml")):
        try:
            mapping = load_mapping(path)
        except HealthCodeError as exc:
            click.echo(f"{path.name}\tINVALID\t{exc.message}")
            continue
        click.echo(f"{mapping.scheme}\t{mapping.name}\t{', '.join(mapping.issuers)}")


@mappings.command("remove")
@click.argument("scheme")
def mappings_remove(scheme):
    _remove("mappings", f"{scheme}.toml", f"mapping file for {scheme}")


@main.group()
def policies():
    """Conversion policies for schemes without a mapping file (<data dir>/policies)."""


@policies.command("add")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
def policies_add(source):
    """Validate a policy file (scheme = "...", [policy]) and install it."""
    from .policy import load_policy_file

    try:
        policy = load_policy_file(Path(source))
    except HealthCodeError as exc:
        _fail(exc.message)
    target = _folder(_config(), "policies") / f"{_check_name(policy.scheme)}.toml"
    target.write_bytes(Path(source).read_bytes())
    click.echo(f"added the {policy.scheme} policy; restart the service to apply")


@policies.command("list")
def policies_list():
    from .policy import load_policy_file

    for path in sorted(_folder(_config(), "policies").glob("*.toml")):
        policy = load_policy_file(path)
        click.echo(f"{policy.scheme}\taccept {','.join(policy.accept)}\t"
                   f"{len(policy.require)} requirements\t{len(policy.grant)} grants")


@policies.command("remove")
@click.argument("scheme")
def policies_remove(scheme):
    _remove("policies", f"{scheme}.toml", f"policy for {scheme}")


@main.command()
def schemes():
    """The installed schemes (entry points and partner mapping files)."""
    from .recognition import build_registry

    registry = build_registry(_config())
    for adapter in registry.adapters():
        click.echo(f"{adapter.scheme}\t{'encode+decode' if adapter.can_encode else 'decode'}"
                   f"\t{type(adapter).__module__}.{type(adapter).__name__}")


# -- serving ---------------------------------------------------------------------------------

@main.command()
@click.option("--bind", default=None, help="Address to listen on (default 127.0.0.1:8000, "
                                           "or $HEALTHCODE_BIND).")
@click.option("--workers", type=int, default=None, help="Worker processes (default from CPUs).")
def serve(bind, workers):
    """Run the service under gunicorn (starting a private Redis if REDIS_URL is unset)."""
    from . import embedded_redis

    cfg = _config()
    started_redis = not cfg["REDIS_URL"]
    try:
        prepared = bootstrap.prepare(cfg)
    except ConfigurationError as exc:  # e.g. a shared Redis but no subject secret
        _fail(exc.message)
    data_dir = Path(cfg["DATA_DIR"]).resolve()
    if prepared["created"].get("key"):
        click.echo(f"created signing key {prepared['created']['key']} in {data_dir / 'keys'}")
    if started_redis:
        click.echo(f"REDIS_URL is unset: using a private redis-server with its data in "
                   f"{data_dir / 'redis'} (append-only file on)")
        os.environ["REDIS_URL"] = cfg["REDIS_URL"]
    os.environ["HEALTHCODE_DATA_DIR"] = str(data_dir)
    if bind:
        os.environ["HEALTHCODE_BIND"] = bind
    if workers:
        os.environ["HEALTHCODE_WORKERS"] = str(workers)
    click.echo("get an API credential with:  healthcode tokens create --role authority")
    from .gunicorn_app import run

    try:
        run()
    finally:
        if started_redis:
            embedded_redis.stop(data_dir)


# -- offline issue and verify ----------------------------------------------------------------

@main.command()
@click.argument("status_file", type=click.File("r", encoding="utf-8"))
@click.option("--out", "out_path", type=click.Path(dir_okay=False),
              help="Write the QR image here (default: <subject id>.png).")
@click.option("--format", "fmt", type=click.Choice(["png", "svg"]), default=None,
              help="Image format (default: from --out's suffix, else png).")
@click.option("--ttl", type=int, default=None, help="Validity in seconds (default CODE_TTL).")
def issue(status_file, out_path, fmt, ttl):
    """Sign a code from STATUS_FILE (JSON, '-' for stdin), offline: no Redis needed.

    The code is printed; its QR image is written to a file. The JSON is the body of
    POST /api/v1/codes (name, document, status, reasons, evidence).
    """
    from . import qr, tokens as native
    from .residents import parse_status, subject_from
    from .subject import load_secret, subject_id

    cfg = _config()
    try:
        data = json.load(status_file)
        if not isinstance(data, dict):
            raise ValueError("the status file must hold a JSON object")
        subject = subject_from(data)
        status, _ = parse_status(data)
    except (ValueError, HealthCodeError) as exc:
        _fail(getattr(exc, "message", str(exc)))
    try:  # the service's subject ids: never a secret of its own when REDIS_URL is set
        secret = load_secret(cfg["SUBJECT_SECRET"], cfg["DATA_DIR"], create=not cfg["REDIS_URL"])
    except ConfigurationError as exc:
        _fail(exc.message)
    sid = subject_id(secret, subject.document)
    ring = _ring(cfg)
    if not ring.has_active():
        _fail("no signing key: run `healthcode keys generate`")
    code = native.sign(ring, issuer=cfg["ISSUER"], subject_id=sid, status=status,
                       status_version=0, masked_name=subject.masked_name,
                       issued_at=datetime.now(timezone.utc), ttl=ttl or cfg["CODE_TTL"])
    out = Path(out_path or f"{sid}.{fmt or 'png'}")
    fmt = fmt or (out.suffix.lstrip(".") if out.suffix in (".png", ".svg") else "png")
    out.write_bytes(qr.render(code, fmt))
    click.echo(f"wrote {out} (QR version {qr.version(code)})", err=True)
    click.echo(code)


@main.command()
@click.argument("code")
@click.option("--trust", "trust_paths", multiple=True, type=click.Path(exists=True),
              help="JWKS files, PEM/DER certificates, or folders of them (repeatable).")
@click.option("--issuer", help="The issuer that JWK sets and revocation lists under --trust "
                               "belong to, when a file does not name one itself.")
@click.option("--at", "at_text", help="Check validity at this ISO 8601 time (default now).")
def verify(code, trust_paths, issuer, at_text):
    """Verify CODE offline and print the result as JSON; exit 0 only if it is valid.

    CODE may be '-' to read it from stdin, or @FILE to read it from a file.
    """
    from .offline import verify_offline
    from .record import parse_time

    cfg = _config()
    if code == "-":
        code = sys.stdin.read()
    elif code.startswith("@"):
        code = Path(code[1:]).read_text(encoding="utf-8")
    try:
        at = parse_time(at_text, "--at") if at_text else None
        result = verify_offline(code.strip(), cfg, trust_paths=trust_paths, at=at,
                                issuer=issuer)
    except HealthCodeError as exc:
        _fail(exc.message, code=2)
    click.echo(json.dumps(result, ensure_ascii=False, indent=2))
    sys.exit(0 if result["valid"] else 1)


if __name__ == "__main__":  # pragma: no cover
    main()
