"""The ``healthcode`` command (DESIGN.md, **contract** for the command names).

It reads the same environment configuration as the service. Secrets are printed only where the
operator asked for one (a new bearer token, on the last line), never logged.
"""
from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta, timezone
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


# A kid is base64url and starts with "-" one time in 64 ("-hUNqubE"): taken as an option, it
# would stop the command with a usage error, so a leading dash is read as the argument here.
@keys.command("retire", context_settings={"ignore_unknown_options": True})
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
@click.option("--mode", help="Bind a checkpoint credential to a checkpoint mode "
                             "(<data dir>/modes/NAME.toml): every scan applies its rules.")
def tokens_create(role, subject, label, mode):
    """Create a credential; the bearer token is the last line printed."""
    cfg = _config()
    if mode:
        from .rules.modes import load_mode, valid_mode_name

        path = config_module.data_path(cfg, "modes", f"{mode}.toml")
        if not valid_mode_name(mode) or not path.is_file():
            _fail(f"no mode {mode!r} in {path.parent}")
        try:
            load_mode(path)
        except HealthCodeError as exc:
            _fail(exc.message)
    try:
        credential, token = _store(cfg).create_credential(role, subject, label, mode=mode)
    except (ValueError, HealthCodeError) as exc:
        _fail(str(exc))
    click.echo(f"created {role} credential {credential.id}"
               + (f" for subject {subject}" if subject else "")
               + (f" bound to mode {mode}" if mode else ""))
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


# -- the store as a whole ----------------------------------------------------------------------

@main.group()
def store():
    """The Redis store as a whole: its data layout across releases."""


@store.command("migrate")
@click.option("--dry-run", is_flag=True, help="Only count what would change; write nothing.")
def store_migrate(dry_run):
    """Convert an earlier release's records, histories and audit stream (visits every primary).

    Idempotent and resumable: run it again after an interruption. Exit 1 if a subject failed.
    """
    from . import migrate

    store_ = _store(_config())
    seen = [0]

    def progress(count):
        before, seen[0] = seen[0], seen[0] + count
        if seen[0] // 50_000 > before // 50_000:
            click.echo(f"scanned {seen[0]} records", err=True)

    try:
        report = migrate.run(store_, dry_run=dry_run, progress=progress)
    except HealthCodeError as exc:
        _fail(exc.message)
    for line in report.lines():
        click.echo(line)
    if report.failed:
        sys.exit(1)


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
@click.option("--signature", "signature_path", type=click.Path(exists=True, dir_okay=False),
              help="A detached signature over SOURCE (e.g. vci_snapshot.sig).")
@click.option("--signer", "signer_path", type=click.Path(exists=True, dir_okay=False),
              help="The certificate that made --signature; for a master list or CRL without "
                   "--signature, the CSCA it must chain to.")
@click.option("--force", is_flag=True, help="Install a list dated older than the one it "
                                            "replaces.")
def trust_add(source, name, issuer, scheme, kid, signature_path, signer_path, force):
    """Trust a list in any format of the field, auto-detected (also: trust import).

    JWK sets, PEM/DER certificates, SHC revocation lists, EU DCC DSC lists, the VCI directory
    snapshot, issuer lists, ICAO master lists and CSCA CRLs. Nothing is installed unless the
    whole list reads (and its signature checks out); the same list again changes nothing.
    """
    from .trust import TrustStore
    from .trust.folder import import_list, load_into

    cfg = _config()
    source = Path(source)
    folder = _folder(cfg, "trust")
    installed = TrustStore()
    try:
        load_into(installed, folder)
    except HealthCodeError as exc:
        _fail(f"the installed trust does not load: {exc.message}")
    try:
        result = import_list(
            folder, source.read_bytes(), name=_check_name(name or source.name),
            store=installed, issuer=issuer, scheme=scheme, kid=kid,
            signature=Path(signature_path).read_bytes() if signature_path else None,
            signer=Path(signer_path).read_bytes() if signer_path else None, force=force)
    except HealthCodeError as exc:
        _fail(exc.message)
    listed = result.trust_list
    click.echo(f"{result.action} {result.name}: {listed.format}, {listed.entries} entries"
               + (f", signed by {listed.signed_by}" if listed.signed_by else ""))
    for note in listed.notes:
        click.echo(f"  note: {note}")
    if result.action != "unchanged":
        click.echo("restart the service to apply")


trust.add_command(trust_add, name="import")


@trust.command("list")
@click.option("--entries", is_flag=True, help="Also every key, certificate and revocation "
                                              "list, per file.")
@click.option("--json", "as_json", is_flag=True, help="The summary as JSON.")
def trust_list(entries, as_json):
    """Sources with their age, counts per scheme, country and issuer, expired entries."""
    from .trust import TrustStore
    from .trust.folder import load_file, load_order

    cfg = _config()
    days = cfg["TRUST_MAX_AGE_DAYS"]
    store = TrustStore(max_age=timedelta(days=days) if days else None)
    unreadable = []
    folder = _folder(cfg, "trust")
    for path, raw in load_order(folder):
        name = str(path.relative_to(folder))
        try:
            load_file(store, path, raw, name=name)
        except HealthCodeError as exc:
            unreadable.append((name, exc.message))
    summary = store.summary()
    if as_json:
        summary["unreadable"] = [{"name": n, "message": m} for n, m in unreadable]
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
        return
    stale = set(summary["stale"])
    for src in summary["sources"]:
        age = f"{src['age_days']:g} days" if src["age_days"] is not None else "age unknown"
        click.echo(f"source\t{src['name']}\t{src['format']}\t{src['entries']} entries\t"
                   f"as of {src['as_of']}\t{age}" + ("\tSTALE" if src["name"] in stale else "")
                   + (f"\tsigned by {src['signed_by']}" if src["signed_by"] else ""))
        for note in src["notes"]:
            click.echo(f"  note\t{note}")
    for name, message in unreadable:
        click.echo(f"source\t{name}\tUNREADABLE\t{message}")
    for scheme, tally in summary["schemes"].items():
        click.echo(f"scheme\t{scheme}\t" + ", ".join(f"{v} {k.replace('_', ' ')}"
                                                    for k, v in tally.items()))
    for scheme, countries in summary["countries"].items():
        for country, tally in countries.items():
            click.echo(f"country\t{scheme}\t{country}\t{tally['certificates']} certificates"
                       f"\t{tally['expired']} expired")
    for iss, info in summary["issuers"].items():
        click.echo(f"issuer\t{info['scheme'] or '*'}\t{iss}\t{info['keys']} keys"
                   + (f"\tlast retrieved {info['last_retrieved']}" if info["last_retrieved"]
                      else "")
                   + (f"\tcanonical {info['canonical_iss']}" if info["canonical_iss"] else ""))
    if entries:
        _trust_entries(cfg)


def _trust_entries(cfg) -> None:
    from .trust import TrustStore
    from .trust.folder import load_file, load_order

    for path, raw in load_order(_folder(cfg, "trust")):
        store = TrustStore()
        try:
            load_file(store, path, raw)
        except HealthCodeError:
            continue  # reported above
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
    from .trust.folder import remove

    if not remove(_folder(_config(), "trust"), _check_name(name)):
        _fail(f"no trust file {name}")
    click.echo(f"removed trust file {name}; restart the service to apply")


@trust.command("bundle")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Where to write the JWS (what GET /api/v1/trust/bundle serves).")
def trust_bundle(out_path):
    """Write the signed trust bundle for offline and third-party scanners.

    Built by the service's own app from the same configuration, so it is what
    GET /api/v1/trust/bundle serves: trust folder, keys, revocations (from Redis), rules.
    """
    from . import create_app, recognition

    try:
        app = create_app()
        with app.app_context():
            bundle = recognition.get_bundle()
    except HealthCodeError as exc:
        _fail(exc.message)
    Path(out_path).write_text(bundle.token, encoding="ascii")
    click.echo(f"wrote {out_path}: {len(bundle.token)} bytes, kid {bundle.kid}, "
               f"expires {bundle.expires_at:%Y-%m-%dT%H:%M:%SZ}")


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


@policies.command("export")
@click.option("--certlogic", "scheme", required=True, metavar="SCHEME",
              help="The scheme whose policy to write as EU DCC business rules.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Write one rule file per rule here (default: a JSON array on stdout).")
@click.option("--country", default="XX", show_default=True,
              help="The rules' Country (two letters; XX is ISO's user-assigned code).")
def policies_export(scheme, out_dir, country):
    """Write a TOML policy as EU-format CertLogic rules a partner can run in their engine.

    The rules decide as the policy does for codes without a colour (see
    healthcode/rules/export.py for the mapping and what cannot be exported).
    """
    from .policy import load_policies
    from .recognition import build_registry
    from .rules.export import export_policy

    cfg = _config()
    try:
        found = load_policies(config_module.data_path(cfg, "policies"), build_registry(cfg))
        if scheme not in found:
            _fail(f"no policy for {scheme!r} (policies: {', '.join(sorted(found)) or 'none'})")
        rules = export_policy(found[scheme], country=country)
    except HealthCodeError as exc:
        _fail(exc.message)
    if not out_dir:
        click.echo(json.dumps(rules, ensure_ascii=False, indent=2))
        return
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for rule in rules:
        (folder / f"{rule['Identifier']}.json").write_text(
            json.dumps(rule, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        click.echo(f"wrote {rule['Identifier']}.json: {rule['Description'][0]['desc']}")


# -- acceptance rules, value sets, checkpoint modes -------------------------------------------


@main.group()
def rules():
    """EU DCC business rules (<data dir>/rules), as the EU gateway publishes them."""


@rules.command("add")
@click.argument("source", type=click.Path(exists=True))
@click.option("--skip-invalid", is_flag=True,
              help="Add the valid rules of a folder and list the invalid ones, instead of "
                   "adding nothing when one is invalid.")
def rules_add(source, skip_invalid):
    """Check and install a rule file, or every rule file under a folder (tests/ are skipped)."""
    from .rules.ruleset import RuleError, file_name, find_rule_files, read_rule_file

    folder = _folder(_config(), "rules")
    found, errors = [], []
    for path in find_rule_files(Path(source)):
        try:
            found.append((path, read_rule_file(path)))
        except RuleError as exc:
            errors.append(exc.message)
    for message in errors:
        click.echo(f"invalid: {message}", err=True)
    if errors and not skip_invalid:
        _fail(f"{len(errors)} invalid rule file(s); nothing added (--skip-invalid adds the rest)")
    if not found:
        _fail(f"no rule files in {source}")
    for path, rule in found:
        (folder / file_name(rule)).write_bytes(path.read_bytes())
        click.echo(f"added {rule.identifier} {rule.version} ({rule.type}, {rule.country}, "
                   f"{rule.certificate_type})")
    click.echo(f"{len(found)} rule(s) added; restart the service to apply")


@rules.command("list")
def rules_list():
    """Installed rules: identifier, version, type, country, certificate type, validity."""
    from .rules.ruleset import RuleSet

    try:
        ruleset = RuleSet.load(_folder(_config(), "rules"))
    except HealthCodeError as exc:
        _fail(exc.message)
    for rule in sorted(ruleset.rules, key=lambda r: (r.country, r.identifier, r.version_key)):
        click.echo(f"{rule.identifier}\t{rule.version}\t{rule.type}\t{rule.country}\t"
                   f"{rule.certificate_type}\t{rule.data['ValidFrom']}..{rule.data['ValidTo']}"
                   f"\t{rule.describe('en')}")


@rules.command("remove")
@click.argument("identifier")
@click.option("--version", "version", help="Only this version (default: every version).")
def rules_remove(identifier, version):
    """Remove an installed rule (every version of IDENTIFIER, or one)."""
    import re

    if not re.fullmatch(r"[A-Z]{2}-[A-Z]{2}-\d{4}", identifier):
        _fail(f"{identifier!r} is not a rule identifier (such as VR-AT-0001)")
    folder = _folder(_config(), "rules")
    pattern = f"{identifier}_{version}.json" if version else f"{identifier}_*.json"
    removed = [p for p in folder.glob(pattern) if p.is_file()]
    if not removed:
        _fail(f"no installed rule {identifier}" + (f" version {version}" if version else ""))
    for path in removed:
        path.unlink()
        click.echo(f"removed {path.stem}")
    click.echo("restart the service to apply")


@rules.command("test")
@click.argument("source", type=click.Path(exists=True))
@click.option("--verbose", "-v", is_flag=True, help="Print every test, not only failures.")
def rules_test(source, verbose):
    """Run rule tests in the upstream format (<rule>/rule.json, <rule>/tests/*.json).

    Exits non-zero when a test fails or a rule file cannot be loaded.
    """
    from .rules.testing import run_folder

    report = run_folder(Path(source))
    for message in report.broken_rules:
        click.echo(f"BROKEN {message}")
    for outcome in report.outcomes:
        if verbose or not outcome.ok:
            click.echo(f"{'ok  ' if outcome.ok else 'FAIL'} {outcome.rule} {outcome.path} "
                       f"{outcome.name}: {outcome.detail}")
    for path in report.not_tests:
        click.echo(f"skipped {path}: not a rule test (no payload or expected)")
    passed = len(report.outcomes) - len(report.failed)
    click.echo(f"{passed} passed, {len(report.failed)} failed"
               + (f", {len(report.broken_rules)} broken rule files" if report.broken_rules
                  else ""))
    sys.exit(0 if report.ok and report.outcomes else 1)


@main.group()
def valuesets():
    """EU DCC value sets (<data dir>/valuesets), passed to rules as external.valueSets."""


@valuesets.command("add")
@click.argument("source", type=click.Path(exists=True))
def valuesets_add(source):
    """Check and install an EU value-set file, or every one in a folder."""
    from .rules.valuesets import ValueSetError, find_valueset_files, read_valueset_file

    folder = _folder(_config(), "valuesets")
    loaded = []
    for path in find_valueset_files(Path(source)):
        try:
            loaded.append((path, *read_valueset_file(path)))
        except ValueSetError as exc:
            _fail(exc.message)
    if not loaded:
        _fail(f"no value-set files in {source}")
    for path, vs_id, codes, _data in loaded:
        (folder / f"{vs_id}.json").write_bytes(path.read_bytes())
        click.echo(f"added value set {vs_id} ({len(codes)} codes)")
    click.echo("restart the service to apply")


@valuesets.command("list")
def valuesets_list():
    from .rules.valuesets import load_valuesets

    try:
        sets = load_valuesets(_folder(_config(), "valuesets"))
    except HealthCodeError as exc:
        _fail(exc.message)
    for vs_id, codes in sorted(sets.items()):
        click.echo(f"{vs_id}\t{len(codes)} codes")


@main.group()
def modes():
    """Checkpoint modes (<data dir>/modes/NAME.toml)."""


@modes.command("list")
def modes_list():
    from .rules.modes import load_modes

    try:
        found = load_modes(_folder(_config(), "modes"))
    except HealthCodeError as exc:
        _fail(exc.message)
    for mode in found.values():
        click.echo(f"{mode.name}\t{mode.country or '-'}\t{','.join(mode.rule_types)}\t"
                   f"{len(mode.extra)} extra rules\t{mode.describe()}")


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
    """Run the service under gunicorn (starting a private Redis if REDIS_URL is unset).

    HUP to this process reloads configuration (trust, mappings, policies, signers, keys: new
    workers read them) and leaves Redis running; TERM drains the workers, then stops the
    private Redis, last.
    """
    from . import bootstrap, embedded_redis, gunicorn_hooks

    cfg = _config()
    started_redis = not cfg["REDIS_URL"]
    data_dir = Path(cfg["DATA_DIR"]).resolve()
    before = dict(os.environ)  # put back if start-up is refused (this may be a test's process)
    if bind:
        os.environ["HEALTHCODE_BIND"] = bind
        cfg["BIND"] = bind
    # this instance's own files (control socket, metrics) go to its runtime dir, never to a
    # data dir that other hosts share; fixed here, before REDIS_URL may be set below
    runtime = config_module.runtime_path(cfg)
    os.environ["HEALTHCODE_RUNTIME_DIR"] = str(runtime)
    # every worker writes its metrics here, and a scrape of any worker reads them all; set
    # before anything in this process imports prometheus_client (it reads it at import)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(gunicorn_hooks.metrics_directory(
        cfg["METRICS_DIR"] or runtime / "metrics"))
    try:
        prepared = bootstrap.prepare(cfg)
    except ConfigurationError as exc:  # e.g. a shared Redis but no subject secret
        os.environ.clear()
        os.environ.update(before)
        _fail(exc.message)
    if prepared["created"].get("key"):
        click.echo(f"created signing key {prepared['created']['key']} in {data_dir / 'keys'}")
    if started_redis:
        click.echo(f"REDIS_URL is unset: using a private redis-server with its data in "
                   f"{data_dir / 'redis'} (append-only file on)")
        os.environ["REDIS_URL"] = cfg["REDIS_URL"]
    os.environ["HEALTHCODE_DATA_DIR"] = str(data_dir)
    if workers:
        os.environ["HEALTHCODE_WORKERS"] = str(workers)
    click.echo("get an API credential with:  healthcode tokens create --role authority")
    from .gunicorn_app import run

    master = os.getpid()
    try:
        run()
    finally:
        # gunicorn forks its workers from inside run(): a worker leaving (HUP, TERM, recycling)
        # unwinds through here too, and must not take the private Redis with it.
        if started_redis and os.getpid() == master:
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
    if ttl is not None and not 10 <= ttl <= native.MAX_ONE_SHOT_TTL:
        _fail(f"--ttl must be between 10 and {native.MAX_ONE_SHOT_TTL} seconds: a one-shot "
              f"code lives at most 30 days, and verifiers refuse a longer one")
    try:
        data = json.load(status_file)
        if not isinstance(data, dict):
            raise ValueError("the status file must hold a JSON object")
        subject = subject_from(data)
        status, _ = parse_status(data)
    except RecursionError:
        _fail("the status file nests too deep to be a status")
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
              help="Trust lists in any format `trust import` reads (JWK sets, certificates, "
                   "DSC lists, the VCI snapshot, master lists...), or folders of them "
                   "(repeatable).")
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
