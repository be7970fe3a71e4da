"""`healthcode verify --trust LIST` with a list in the field's format: the DCC signer is found
by kid among the list's certificates, and a stale list still verifies, with a warning."""
from __future__ import annotations

import json
import os
from datetime import timedelta

from click.testing import CliRunner

from healthcode.cli import main
from tests.mapping.test_eu_dcc import claims_for, dcc_payload, seal
from tests.support import conformance_dir
from tests.trust import pki


def verify(tmp_path, code, *trust):
    env = {"HEALTHCODE_DATA_DIR": str(tmp_path / "scanner"),
           "HEALTHCODE_SUBJECT_SECRET": "cli-secret-0123456789",
           "HEALTHCODE_SECRET_KEY": "test-session-secret-0123456789"}
    args = ["verify", code, "--at", pki.NOW.strftime("%Y-%m-%dT%H:%M:%SZ")]
    for path in trust:
        args += ["--trust", str(path)]
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    return result.exit_code, json.loads(result.output)


def test_an_eu_dcc_verifies_against_a_dsc_list_among_real_ones(tmp_path):
    cert, key = pki.dsc("AT")
    code = seal(claims_for(dcc_payload(), iat=pki.NOW - timedelta(hours=1),
                           exp=pki.NOW + timedelta(days=1)), key, pki.der(cert))
    ours = tmp_path / "ours.json"
    ours.write_bytes(pki.dsc_list([(cert, "AT")]))
    german = conformance_dir("trustlists") / "de-dsc-list.json"
    status, answer = verify(tmp_path, code, german, ours)
    assert status == 0, answer
    assert answer["valid"] and answer["scheme"] == "eu-dcc"
    assert answer["warnings"] == []

    status, answer = verify(tmp_path, code, german)  # the German list alone: not our signer
    assert status == 1 and answer["reason"] == "unknown_key"

    old = (pki.NOW - timedelta(days=40)).timestamp()
    os.utime(ours, (old, old))
    status, answer = verify(tmp_path, code, ours)
    assert status == 0 and answer["valid"]  # stale trust still verifies...
    assert [w["code"] for w in answer["warnings"]] == ["stale_trust_source"]  # ...and says so
    assert "ours.json (40 days)" in answer["warnings"][0]["message"]
