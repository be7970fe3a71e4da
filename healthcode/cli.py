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

from . import config as config_module
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


# -- credentials -----------------------------------------------------------------------------

def _store(cfg):
    from . import bootstrap
    from .store import RedisStore

    bootstrap.prepare(cfg)
    return RedisStore.from_url(cfg["REDIS_URL"], timeout=2.0)


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


# -- serving ---------------------------------------------------------------------------------

@main.command()
@click.option("--bind", default=None, help="Address to listen on (default 127.0.0.1:8000, "
                                           "or $HEALTHCODE_BIND).")
@click.option("--workers", type=int, default=None, help="Worker processes (default from CPUs).")
def serve(bind, workers):
    """Run the service under gunicorn (starting a private Redis if REDIS_URL is unset)."""
    from . import bootstrap, embedded_redis

    cfg = _config()
    started_redis = not cfg["REDIS_URL"]
    prepared = bootstrap.prepare(cfg)
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
    secret = load_secret(cfg["SUBJECT_SECRET"], cfg["DATA_DIR"])
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
@click.option("--at", "at_text", help="Check validity at this ISO 8601 time (default now).")
def verify(code, trust_paths, at_text):
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
        result = verify_offline(code.strip(), cfg, trust_paths=trust_paths, at=at)
    except HealthCodeError as exc:
        _fail(exc.message, code=2)
    click.echo(json.dumps(result, ensure_ascii=False, indent=2))
    sys.exit(0 if result["valid"] else 1)


if __name__ == "__main__":  # pragma: no cover
    main()
