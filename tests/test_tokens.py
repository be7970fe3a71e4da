"""The native code: compact, signed, and refused with the right reason when it is not right."""
import json
from datetime import datetime, timedelta, timezone

import pytest

from healthcode import qr, tokens
from healthcode.errors import CODE_REASONS, CodeError
from healthcode.keys import KeyRing
from healthcode.record import mask_name
from tests import tokens_util as tu



def now():
    """Read when used: a slow test before this one must not age the clock it checks."""
    return datetime.now(timezone.utc)


@pytest.fixture
def ring(tmp_path):
    ring = KeyRing(tmp_path / "keys", reload_interval=0)
    ring.generate()
    return ring


def sign(ring, name="陳大文", status="green", version=1, ttl=300):
    return tokens.sign(ring, issuer="HC-TEST", subject_id="AAAAAAAAAAAAAAAA", status=status,
                       status_version=version, masked_name=mask_name(name), issued_at=now(),
                       ttl=ttl)


def test_carries_only_what_a_checkpoint_needs(ring):
    claims = tokens.unverified_claims(sign(ring))
    assert set(claims) == {"iss", "sub", "st", "sv", "nm", "iat", "exp"}
    assert claims["nm"] == "陳*文"


def test_header_names_the_key_and_nothing_else(ring):
    import jwt
    assert jwt.get_unverified_header(sign(ring)) == {"alg": "ES256", "kid": ring.active.kid}


@pytest.mark.parametrize("name", [
    "陳大文", "Chan Tai Man", "Maria Fernanda da Silva Oliveira Santos de Albuquerque",
    "歐陽震華李明大文歐陽震華李明大文",
])
def test_fits_qr_version_12_at_error_correction_m(ring, name):
    token = sign(ring, name=name, status="yellow", version=99999)
    assert len(token.encode()) <= tokens.MAX_CODE_BYTES
    assert qr.version(token, "M") <= 12
    assert tokens.verify(token, ring, issuer="HC-TEST").masked_name.startswith(mask_name(name)[:2])


def test_a_naive_ten_claim_jwt_would_need_a_much_larger_symbol(ring):
    import jwt
    naive = jwt.encode({"iss": "https://health.example.gov.mo", "sub": "H1234567",
                        "name": "陳大文", "status": "green", "status_version": 1,
                        "document_type": "travel_permit", "document_region": "MO",
                        "birth_date": "1980-01-02", "iat": 1764300000, "exp": 1764300300},
                       ring.active.private_key, algorithm="ES256",
                       headers={"kid": "a-long-key-identifier-thumbprint-0123456789"})
    assert qr.version(naive, "M") >= 15


def test_verifies_what_it_signed(ring):
    claims = tokens.verify(sign(ring, status="red", version=3), ring, issuer="HC-TEST")
    assert (claims.status, claims.status_version, claims.subject_id) == \
        ("red", 3, "AAAAAAAAAAAAAAAA")


REJECTIONS = [
    ("tampered", lambda r: tu.tampered(tu.signed(r)), "bad_signature"),
    ("truncated signature", lambda r: tu.truncated_signature(tu.signed(r)), "bad_signature"),
    ("truncated to an odd length", lambda r: tu.signed(r)[:-5], "malformed"),
    ("cut in half", lambda r: tu.signed(r)[:120], "malformed"),
    ("alg none", lambda r: tu.unsigned(r), "bad_signature"),
    ("HS256 keyed with our public key", tu.hs256_with_public_key, "bad_signature"),
    ("unknown kid", lambda r: tu.signed_with_new_key("ZZZZZZZZ"), "unknown_key"),
    ("our kid, another key", lambda r: tu.signed_with_new_key(r.active.kid), "bad_signature"),
    ("wrong issuer", lambda r: tu.signed(r, iss="SOMEONE-ELSE"), "untrusted_issuer"),
    ("expired", lambda r: tu.signed(r, iat=int(now().timestamp()) - 3600, ttl=300), "expired"),
    ("not yet valid", lambda r: tu.signed(r, iat=int(now().timestamp()) + 3600), "not_yet_valid"),
    ("unknown status", lambda r: tu.signed(r, status="purple"), "malformed"),
    ("garbage", lambda r: "not a code at all", "malformed"),
    ("empty", lambda r: "", "malformed"),
    ("oversized", lambda r: "e" * 5000, "too_large"),
]


@pytest.mark.parametrize("make, reason", [(m, r) for _, m, r in REJECTIONS],
                         ids=[i for i, _, _ in REJECTIONS])
def test_rejects_bad_codes_with_their_reason(ring, make, reason):
    with pytest.raises(CodeError) as info:
        tokens.verify(make(ring), ring, issuer="HC-TEST")
    assert info.value.reason == reason
    assert reason in CODE_REASONS


def test_clock_skew_is_tolerated_up_to_the_allowance(ring):
    token = tu.signed(ring, iat=int(now().timestamp()) + 30)
    assert tokens.verify(token, ring, issuer="HC-TEST", skew=60)
    with pytest.raises(CodeError):
        tokens.verify(token, ring, issuer="HC-TEST", skew=0)


def test_verifies_at_a_given_instant(ring):
    token = sign(ring, ttl=300)
    assert tokens.verify(token, ring, issuer="HC-TEST", at=now() + timedelta(seconds=200))
    with pytest.raises(CodeError) as info:
        tokens.verify(token, ring, issuer="HC-TEST", at=now() + timedelta(hours=1))
    assert info.value.reason == "expired"


def test_issue_reports_the_claims_exactly_as_signed(ring):
    """A long masked name is shortened to fit; what the API reports is what the code says."""
    token, claims = tokens.issue(ring, issuer="HC-TEST", subject_id="AAAAAAAAAAAAAAAA",
                                 status="green", status_version=7,
                                 masked_name=mask_name("Maria Fernanda da Silva Oliveira Santos"),
                                 issued_at=now(), ttl=300)
    assert claims == tokens.verify(token, ring, issuer="HC-TEST")
    assert claims.masked_name.endswith("…")


# -- hostile headers and claims (issue 11) --------------------------------------------------------

CRIT_VALUES = ["abc", [], ["x"], [1], [{}], ["exp"], ["b64"], None, {}, 1, ["alg", "kid"]]


@pytest.mark.parametrize("crit", CRIT_VALUES, ids=repr)
def test_a_crit_header_we_do_not_understand_makes_the_code_invalid(ring, crit):
    """RFC 7515 §4.1.11: a JWS naming a critical extension the verifier does not understand
    is invalid. We define none, so any ``crit`` is refused, before the signature is checked."""
    with pytest.raises(CodeError) as info:
        tokens.verify(tu.forged_with_header(ring, {"crit": crit}), ring, issuer="HC-TEST")
    assert info.value.reason == "malformed"


def test_a_crit_header_is_refused_even_under_a_good_signature(ring):
    token = tu.signed_claims(ring, tu.claims(), crit=["exp"], exp=1)
    with pytest.raises(CodeError) as info:
        tokens.verify(token, ring, issuer="HC-TEST")
    assert info.value.reason == "malformed"


def _times(iat, exp):
    return {**tu.claims(), "iat": iat, "exp": exp}


NOW = int(datetime.now(timezone.utc).timestamp())
ABSURD_TIMES = [
    ("exp 2^63", _times(NOW, 2**63), ("malformed",)),
    ("exp 10^400", _times(NOW, 10**400), ("malformed",)),
    ("exp 2^63 and iat just before it", _times(2**63 - 300, 2**63), ("malformed",)),
    ("iat -10^12", _times(-10**12, NOW + 300), ("malformed", "expired")),
    ("iat and exp -10^12", _times(-10**12, -10**12 + 300), ("malformed", "expired")),
    ("exp -2^63", _times(NOW, -2**63), ("malformed", "expired")),
    ("exp before iat", _times(NOW, NOW - 10), ("malformed", "expired")),
    ("exp ten years ahead", _times(NOW, NOW + 10 * 365 * 86400), ("malformed",)),
    ("one-shot ten years ahead", {**_times(NOW, NOW + 10 * 365 * 86400), "sv": 0},
     ("malformed",)),
    ("dynamic one hour", _times(NOW, NOW + 3600), ("malformed",)),
    ("exp a float", _times(NOW, 1e400), ("malformed",)),
]


@pytest.mark.parametrize("body, reasons", [(b, r) for _, b, r in ABSURD_TIMES],
                         ids=[i for i, _, _ in ABSURD_TIMES])
def test_absurd_times_under_our_own_signature_are_refused(ring, body, reasons):
    token = tu.signed_claims(ring, body)
    with pytest.raises(CodeError) as info:
        tokens.verify(token, ring, issuer="HC-TEST", dynamic_lifetime=300)
    assert info.value.reason in reasons


def test_a_native_code_may_not_outlive_its_lifetime_plus_the_skew(ring):
    """Dynamic codes live CODE_TTL; one-shot codes (status version 0) at most
    MAX_ONE_SHOT_TTL; the clock skew is allowed on top of either."""
    dynamic = tu.signed_claims(ring, _times(NOW, NOW + 300 + 60))
    assert tokens.verify(dynamic, ring, issuer="HC-TEST", dynamic_lifetime=300, skew=60)
    with pytest.raises(CodeError):
        tokens.verify(tu.signed_claims(ring, _times(NOW, NOW + 300 + 61)), ring,
                      issuer="HC-TEST", dynamic_lifetime=300, skew=60)
    month = tokens.MAX_ONE_SHOT_TTL
    one_shot = tu.signed_claims(ring, {**_times(NOW, NOW + month), "sv": 0})
    assert tokens.verify(one_shot, ring, issuer="HC-TEST", dynamic_lifetime=300)
    with pytest.raises(CodeError):
        tokens.verify(tu.signed_claims(ring, {**_times(NOW, NOW + month + 61), "sv": 0}), ring,
                      issuer="HC-TEST", dynamic_lifetime=300, skew=60)


@pytest.mark.parametrize("part", ["header", "payload"])
def test_deeply_nested_json_inside_a_code_is_malformed(ring, part):
    deep = tu.deep_json_text(100_000).encode()
    header = tu.b64(json.dumps({"alg": "ES256", "kid": ring.active.kid}).encode())
    segments = [header, tu.b64(b'{"iss":"HC-TEST"}'), tu.b64(bytes(64))]
    segments[0 if part == "header" else 1] = tu.b64(deep)
    token = ".".join(segments)
    with pytest.raises(CodeError) as info:
        tokens.verify(token, ring, issuer="HC-TEST", max_length=10**6)
    # the header is read before the signature; the payload only after it (which fails here)
    assert info.value.reason == ("malformed" if part == "header" else "bad_signature")
    reader = tokens.read_header if part == "header" else tokens.unverified_claims
    with pytest.raises(CodeError) as info:
        reader(token)
    assert info.value.reason == "malformed"
