"""`healthcode verify CODE --trust PATH... --at TIME` on each real scheme, trusting only files:
a JWK set folder (SHC, with its revocation list), a DER or PEM certificate (EU DCC), a folder of
CSCA certificates (ICAO)."""
import base64
import json

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from healthcode.cli import main
from tests.support import conformance_dir

SHC_ISSUER = "https://spec.smarthealth.cards/examples/issuer"


@pytest.fixture
def verify(tmp_path):
    env = {"HEALTHCODE_DATA_DIR": str(tmp_path / "scanner"),
           "HEALTHCODE_SUBJECT_SECRET": "cli-verify-secret-0123456789",
           "HEALTHCODE_SECRET_KEY": "test-session-secret-0123456789"}

    def run(*args):
        result = CliRunner().invoke(main, ["verify", *args], env=env)
        assert result.exit_code in (0, 1), result.output
        return result.exit_code, json.loads(result.output)

    return run


def test_smart_health_card_with_the_issuer_folder():
    folder = conformance_dir("shc")
    code, answer = _verify_shc(folder, "00", "2024-01-01T00:00:00Z")
    assert code == 0 and answer["scheme"] == "shc" and answer["issuer"] == SHC_ISSUER


@pytest.mark.parametrize("at, reason", [("2024-01-01T00:00:00Z", "revoked"),
                                        ("2025-01-01T00:00:00Z", "expired")])
def test_smart_health_card_03_is_revoked_then_expired(at, reason):
    code, answer = _verify_shc(conformance_dir("shc"), "03", at)
    assert code == 1 and answer["reason"] == reason


def _verify_shc(folder, example, at):
    text = (folder / f"example-{example}-f-qr-code-numeric-value-0.txt").read_text()
    result = CliRunner().invoke(main, ["verify", text.strip(), "--trust",
                                       str(folder / "issuer" / ".well-known"),
                                       "--issuer", SHC_ISSUER, "--at", at])
    return result.exit_code, json.loads(result.output)


def test_a_plain_jwk_set_without_a_named_issuer_is_refused():
    folder = conformance_dir("shc")
    text = (folder / "example-00-f-qr-code-numeric-value-0.txt").read_text().strip()
    result = CliRunner().invoke(main, ["verify", text, "--trust",
                                       str(folder / "issuer" / ".well-known" / "jwks.json")])
    assert result.exit_code == 2 and "issuer" in result.output


@pytest.mark.parametrize("encoding", ["der", "pem"])
def test_eu_dcc_with_the_signer_certificate(tmp_path, verify, encoding):
    case = json.loads((conformance_dir("eudcc") / "DE" / "2DCode" / "raw" / "1.json")
                      .read_text())
    der = base64.b64decode(case["TESTCTX"]["CERTIFICATE"])
    cert_file = tmp_path / f"dsc.{encoding}"
    cert_file.write_bytes(der if encoding == "der" else x509.load_der_x509_certificate(der)
                          .public_bytes(serialization.Encoding.PEM))
    clock = case["TESTCTX"]["VALIDATIONCLOCK"]
    code, answer = verify(case["PREFIX"], "--trust", str(cert_file), "--at", clock)
    assert code == 0 and answer["scheme"] == "eu-dcc", answer
    assert answer["warnings"] == []  # DE/1 follows the letter of the scheme
    code, answer = verify(case["PREFIX"], "--at", clock)
    assert code == 1 and answer["reason"] == "unknown_key"


def test_an_upstream_code_that_strays_from_the_letter_verifies_with_its_warnings(tmp_path,
                                                                                verify):
    """BG/1 writes its birth and vaccination dates as date-times: valid, and said so."""
    case = json.loads((conformance_dir("eudcc") / "BG" / "2DCode" / "raw" / "1.json")
                      .read_text())
    cert_file = tmp_path / "dsc.der"
    cert_file.write_bytes(base64.b64decode(case["TESTCTX"]["CERTIFICATE"]))
    code, answer = verify(case["PREFIX"], "--trust", str(cert_file), "--at",
                          case["TESTCTX"]["VALIDATIONCLOCK"])
    assert code == 0, answer
    assert {w["code"] for w in answer["warnings"]} == {"date_time_for_date"}
    assert answer["record"]["subject"]["birth_date"] == "1978-01-26"


def test_icao_seal_through_a_folder_of_cscas(verify):
    folder = conformance_dir("icao")
    seal = (folder / "kurzdigital-vds-jvm" / "vdsnc_sample_proof_of_vaccination_aus").read_text()
    code, answer = verify(seal, "--trust", str(folder / "kde-khealthcertificate" / "csca"),
                          "--at", "2022-06-01T00:00:00Z")
    assert code == 0 and answer["scheme"] == "icao-vds", answer
    code, answer = verify(seal, "--at", "2022-06-01T00:00:00Z")
    assert code == 1 and answer["reason"] == "unknown_key"
