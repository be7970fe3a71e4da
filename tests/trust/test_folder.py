"""Imports into the trust folder: signature first, all or nothing, idempotent, never rolled back
silently; and what `healthcode trust import|list` tell an operator."""
from __future__ import annotations

import json
import os
import shutil
from datetime import timedelta

import pytest
from click.testing import CliRunner

from healthcode.cli import main
from healthcode.errors import TrustListError, TrustSignatureError
from healthcode.trust import TrustStore
from healthcode.trust.folder import import_list, load_into, meta_path
from tests.support import conformance_dir
from tests.trust import pki


@pytest.fixture(scope="module")
def shared():
    return conformance_dir("trustlists")


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "trust"


def installed(folder) -> TrustStore:
    store = TrustStore()
    load_into(store, folder) if folder.exists() else None
    return store


def snapshot(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


# -- detached signatures ---------------------------------------------------------------------

def test_the_vci_snapshot_imports_only_with_its_signature_checked(shared, folder):
    raw = (shared / "vci-snapshot.json").read_bytes()
    sig = (shared / "vci-snapshot.sig").read_bytes()
    crt = (shared / "vci-snapshot.crt").read_bytes()
    result = import_list(folder, raw, name="vci-snapshot.json", store=installed(folder),
                         signature=sig, signer=crt)
    assert result.action == "added" and result.trust_list.signed_by == "CN=vci.org"
    store = installed(folder)
    assert store.sources["vci-snapshot.json"].signed_by == "CN=vci.org"
    assert len(store.issuers("shc")) == 650


@pytest.mark.parametrize("case", ["changed list", "other signer", "garbled signature"])
def test_a_bad_detached_signature_imports_nothing(shared, folder, case):
    raw = (shared / "vci-snapshot.json").read_bytes()
    sig = (shared / "vci-snapshot.sig").read_bytes()
    crt = (shared / "vci-snapshot.crt").read_bytes()
    if case == "changed list":
        raw = raw.replace(b"State of California", b"State of Californib")
    elif case == "other signer":
        crt = pki.pem(pki.dsc()[0])
    else:
        sig = sig[:-4] + b"\x00\x00\x00\x00"
    with pytest.raises(TrustSignatureError):
        import_list(folder, raw, name="vci-snapshot.json", store=installed(folder),
                    signature=sig, signer=crt)
    assert snapshot(folder) == {}


def test_a_signature_needs_a_signer_and_a_signer_a_signature(shared, folder):
    raw = (shared / "vci-snapshot.json").read_bytes()
    with pytest.raises(TrustListError, match="--signer"):
        import_list(folder, raw, name="v.json", store=installed(folder), signature=b"x")
    with pytest.raises(TrustListError, match="without --signature"):
        import_list(folder, raw, name="v.json", store=installed(folder),
                    signer=(shared / "vci-snapshot.crt").read_bytes())
    assert snapshot(folder) == {}


def test_a_signed_list_changed_after_import_stops_loading(shared, folder):
    import_list(folder, (shared / "vci-snapshot.json").read_bytes(), name="vci.json",
                store=installed(folder), signature=(shared / "vci-snapshot.sig").read_bytes(),
                signer=(shared / "vci-snapshot.crt").read_bytes())
    meta = json.loads(meta_path(folder / "vci.json").read_text())
    # an edit that keeps the sidecar's hash (someone rewrote both) is caught by the signature
    target = folder / "vci.json"
    target.write_bytes(target.read_bytes().replace(b"California", b"Californib"))
    import hashlib
    meta["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
    meta_path(target).write_text(json.dumps(meta))
    with pytest.raises(TrustSignatureError, match="vci.json"):
        installed(folder)


# -- atomic and idempotent -------------------------------------------------------------------

def test_a_corrupt_entry_in_the_middle_imports_nothing_and_keeps_the_old_list(folder):
    first = [(pki.dsc("AA")[0], "AA"), (pki.dsc("BB")[0], "BB")]
    import_list(folder, pki.dsc_list(first), name="dsc.json", store=installed(folder))
    before = snapshot(folder)
    corrupt = pki.dsc_list([first[0], {"kid": "AAAAAAAAAAA=", "rawData": "AAAA"}, first[1],
                            (pki.dsc("CC")[0], "CC")])
    with pytest.raises(TrustListError, match=r"certificates\[1\]"):
        import_list(folder, corrupt, name="dsc.json", store=installed(folder))
    assert snapshot(folder) == before
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []
    assert installed(folder).summary()["schemes"]["eu-dcc"]["certificates"] == 2


def test_the_same_list_again_changes_nothing(folder):
    raw = pki.dsc_list([(pki.dsc("AA")[0], "AA")])
    assert import_list(folder, raw, name="dsc.json", store=installed(folder)).action == "added"
    before = snapshot(folder)
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = import_list(folder, raw, name="dsc.json", store=installed(folder))
    elsewhere = import_list(folder, raw, name="copy.json", store=installed(folder))
    assert (again.action, elsewhere.action, elsewhere.name) == ("unchanged", "unchanged",
                                                                "dsc.json")
    assert snapshot(folder) == before
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps


def test_a_newer_version_replaces_the_list(folder):
    old = pki.dsc_list([(pki.dsc("AA")[0], "AA")])
    new = pki.dsc_list([(pki.dsc("AA")[0], "AA"), (pki.dsc("BB")[0], "BB")])
    import_list(folder, old, name="dsc.json", store=installed(folder))
    assert import_list(folder, new, name="dsc.json", store=installed(folder)).action \
        == "replaced"
    assert (folder / "dsc.json").read_bytes() == new
    store = installed(folder)
    assert store.summary()["schemes"]["eu-dcc"]["certificates"] == 2
    assert list(store.sources) == ["dsc.json"]


def test_a_list_dated_older_than_the_installed_one_is_not_a_silent_rollback(folder):
    def snapshot_of(time: str) -> bytes:
        return json.dumps({"directory": "x", "time": time, "issuerInfo": [
            {"issuer": {"iss": "https://a.example", "name": "A"},
             "keys": [pki.jwk(pki.new_key())], "lastRetrieved": time}]}).encode()

    import_list(folder, snapshot_of("2026-11-20T00:00:00Z"), name="vci.json",
                store=installed(folder))
    with pytest.raises(TrustListError, match="older than the installed one"):
        import_list(folder, snapshot_of("2026-10-01T00:00:00Z"), name="vci.json",
                    store=installed(folder))
    forced = import_list(folder, snapshot_of("2026-10-01T00:00:00Z"), name="vci.json",
                         store=installed(folder), force=True)
    assert forced.action == "replaced"


def test_a_master_list_then_a_crl_of_its_csca(folder):
    ut = pki.Csca("UT")
    dsc_key = pki.new_key()
    revoked = ut.issue(pki.name("DSC UT 1"), dsc_key, serial=4242)
    kept = ut.issue(pki.name("DSC UT 2"), dsc_key, serial=4243)
    import_list(folder, pki.master_list([ut.cert], ut.signer, ut.signer_key), name="ut.ml",
                store=installed(folder), signer=pki.pem(ut.cert))
    import_list(folder, ut.crl([4242]), name="ut.crl", store=installed(folder))
    store = installed(folder)
    assert store.sources["ut.ml"].signed_by.endswith("(configured CSCA: CN=CSCA UT,C=UT)")
    from healthcode.certs import load_certificate
    assert store.is_certificate_revoked(load_certificate(pki.der(revoked)))
    assert not store.is_certificate_revoked(load_certificate(pki.der(kept)))
    assert store.sources["ut.crl"].format == "csca-crl"


# -- the CLI ---------------------------------------------------------------------------------

@pytest.fixture
def cli(tmp_path):
    env = {"HEALTHCODE_DATA_DIR": str(tmp_path / "data"), "HEALTHCODE_ISSUER": "HC-CLI",
           "HEALTHCODE_SUBJECT_SECRET": "cli-secret-0123456789",
           "HEALTHCODE_SECRET_KEY": "test-session-secret-0123456789"}

    def run(*args, **extra):
        return CliRunner().invoke(main, list(args), env={**env, **extra},
                                  catch_exceptions=False)

    run.trust = tmp_path / "data" / "trust"
    return run


def test_trust_import_and_list_the_shared_lists(cli, shared):
    de = cli("trust", "import", str(shared / "de-dsc-list.json"))
    assert de.exit_code == 0, de.output
    assert de.output.startswith("added de-dsc-list.json: dsc-list, 832 entries")
    assert "722 expired (kept)" in de.output
    assert cli("trust", "import", str(shared / "de-dsc-list.json")).output.startswith(
        "unchanged de-dsc-list.json")
    vci = cli("trust", "import", str(shared / "vci-snapshot.json"),
              "--signature", str(shared / "vci-snapshot.sig"),
              "--signer", str(shared / "vci-snapshot.crt"))
    assert vci.exit_code == 0 and "signed by CN=vci.org" in vci.output
    listing = cli("trust", "list", HEALTHCODE_TRUST_MAX_AGE_DAYS="30").output
    lines = listing.splitlines()
    assert "scheme\teu-dcc\t832 certificates, 722 expired certificates" in lines
    assert any(line.startswith("scheme\tshc\t650 issuers, 961 keys") for line in lines)
    de_count = sum(1 for e in json.loads((shared / "de-dsc-list.json").read_text())
                   ["certificates"] if e["country"] == "DE")
    assert any(line.startswith(f"country\teu-dcc\tDE\t{de_count} certificates")
               for line in lines)
    vci_line = next(line for line in lines if line.startswith("source\tvci-snapshot.json"))
    assert "as of 2026-08-22T04:43:50Z" in vci_line and "STALE" in vci_line
    assert "signed by CN=vci.org" in vci_line
    de_line = next(line for line in lines if line.startswith("source\tde-dsc-list.json"))
    assert "\t0 days" in de_line and "STALE" not in de_line  # its age is its import time
    assert any(line.startswith("issuer\tshc\thttps://myvaccinerecord.cdph.ca.gov/creds\t4 keys"
                               "\tlast retrieved 2026-08-22T04:43:50Z") for line in lines)
    summary = json.loads(cli("trust", "list", "--json").output)
    assert summary["stale"] == ["vci-snapshot.json"]


def test_trust_import_refuses_a_bad_signature_with_a_clear_error(cli, shared, tmp_path):
    changed = tmp_path / "vci.json"
    changed.write_bytes((shared / "vci-snapshot.json").read_bytes() + b" ")
    result = cli("trust", "import", str(changed), "--signature", str(shared / "vci-snapshot.sig"),
                 "--signer", str(shared / "vci-snapshot.crt"))
    assert result.exit_code == 1 and "does not verify" in result.output
    assert not cli.trust.exists() or list(cli.trust.iterdir()) == []


def test_trust_remove_forgets_the_sidecar_too(cli, shared):
    cli("trust", "import", str(shared / "se-dsc-list.json"))
    assert meta_path(cli.trust / "se-dsc-list.json").exists()
    assert cli("trust", "remove", "se-dsc-list.json").exit_code == 0
    assert list(cli.trust.iterdir()) == []


def test_a_hand_copied_list_ages_from_its_file_time(cli, shared):
    cli.trust.mkdir(parents=True)
    copy = cli.trust / "se.json"
    shutil.copy(shared / "se-dsc-list.json", copy)
    old = (pki.NOW - timedelta(days=10)).timestamp()
    os.utime(copy, (old, old))
    summary = json.loads(cli("trust", "list", "--json").output)
    assert summary["sources"][0]["age_days"] == pytest.approx(10, abs=0.1)
    assert summary["stale"] == ["se.json"]  # default limit: 7 days


def test_pkd_ldif_files_load_master_lists_before_crls(folder):
    """ICAO names the CRL file icaopkd-001 and the master lists icaopkd-002: the CRLs need the
    CSCAs, so the folder loads the master lists first."""
    ut = pki.Csca("UT")
    crls = pki.ldif(("cn=UT,o=crl", "certificateRevocationList;binary", ut.crl([77])))
    lists = pki.ldif(("cn=UT,o=ml", "pkdMasterListContent",
                      pki.master_list([ut.cert], ut.signer, ut.signer_key)))
    import_list(folder, lists, name="icaopkd-002-complete-000300.ldif", store=installed(folder))
    import_list(folder, crls, name="icaopkd-001-complete-000200.ldif", store=installed(folder))
    store = installed(folder)
    dsc = ut.issue(pki.name("DSC"), pki.new_key(), serial=77)
    from healthcode.certs import load_certificate
    assert store.is_certificate_revoked(load_certificate(pki.der(dsc)))
    assert {s.format for s in store.sources.values()} == {"icao-pkd-ldif"}


def test_an_issuer_named_twice_differently_is_refused_not_guessed(folder):
    raw = json.dumps({"issuer": "https://a.example", "keys": [pki.jwk(pki.new_key(), "k")]})
    with pytest.raises(TrustListError, match="names the issuer https://a.example"):
        import_list(folder, raw.encode(), name="a.json", store=installed(folder),
                    issuer="https://b.example")
    result = import_list(folder, raw.encode(), name="a.json", store=installed(folder),
                         issuer="https://a.example")
    assert result.name == "a.jwks.json"
    assert installed(folder).is_trusted_issuer("https://a.example")


def test_a_corrupt_file_in_the_folder_stops_start_up_and_is_listed(cli, tmp_path, redis_server):
    from healthcode import create_app

    cli.trust.mkdir(parents=True)
    (cli.trust / "broken.json").write_bytes(pki.dsc_list([{"kid": "AAAAAAAAAAA=",
                                                           "rawData": "AAAA"}]))
    with pytest.raises(TrustListError, match=r"broken.json: certificates\[0\]"):
        create_app({"TESTING": True, "REDIS_URL": redis_server.url,
                    "SECRET_KEY": "test-session-secret-0123456789",
                    "DATA_DIR": str(tmp_path / "data"), "SUBJECT_SECRET": "s" * 24})
    listing = cli("trust", "list").output
    assert "source\tbroken.json\tUNREADABLE\t" in listing
