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
    from .store import RedisStore

    try:
        bootstrap.prepare(cfg)
    except ConfigurationError as exc:
        _fail(exc.message)
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
