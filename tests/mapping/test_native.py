"""Our own scheme behind the adapter contract, verified from a published trust list alone."""
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from healthcode.errors import CODE_REASONS, CodeError
from healthcode.keys import KeyRing
from healthcode.record import Provenance, Record, Subject
from healthcode.trust import TrustStore
from mapping import Signer
from mapping.native import NativeAdapter

NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture(scope="module")
def ring(tmp_path_factory):
    ring = KeyRing(tmp_path_factory.mktemp("keys"))
    ring.generate()
    return ring


@pytest.fixture(scope="module")
def trust(ring):
    store = TrustStore()
    store.add_jwks(ring.jwks(), issuer="HC", scheme="native")
    return store


@pytest.fixture(scope="module")
def code(ring):
    key = ring.active
    record = Record(subject=Subject(subject_id="AAAAAAAAAAAAAAAA", masked_name="陳*文"),
                    status="yellow",
                    provenance=Provenance(scheme="native", valid_until=NOW + timedelta(minutes=5),
                                          status_version=3))
    return NativeAdapter().encode(record, signer=Signer(private_key=key.private_key,
                                                        kid=key.kid, issuer="HC"), at=NOW)


def test_encode_then_decode_gives_the_same_facts(code, trust):
    decoded = NativeAdapter().decode(code, trust=trust, at=NOW)
    record = decoded.record
    assert (record.status, record.subject.subject_id, record.subject.masked_name) == \
        ("yellow", "AAAAAAAAAAAAAAAA", "陳*文")
    assert record.provenance.status_version == 3
    assert record.provenance.valid_until == NOW + timedelta(minutes=5)


@pytest.mark.parametrize("change, reason", [
    (lambda t: TrustStore(), "untrusted_issuer"),
])
def test_an_issuer_missing_from_the_trust_list_is_refused(code, change, reason):
    with pytest.raises(CodeError) as info:
        NativeAdapter().decode(code, trust=change(None), at=NOW)
    assert info.value.reason == reason


def test_a_key_of_another_issuer_does_not_verify_ours(code, ring):
    other = TrustStore()
    other.add_jwks(ring.jwks(), issuer="ELSEWHERE", scheme="native")
    with pytest.raises(CodeError) as info:
        NativeAdapter().decode(code, trust=other, at=NOW)
    assert info.value.reason == "untrusted_issuer"


def test_a_forged_key_under_our_kid_is_a_bad_signature(ring, trust):
    forged = Signer(private_key=ec.generate_private_key(ec.SECP256R1()), kid=ring.active.kid,
                    issuer="HC")
    record = Record(subject=Subject(subject_id="BBBBBBBBBBBBBBBB"), status="green")
    with pytest.raises(CodeError) as info:
        NativeAdapter().decode(NativeAdapter().encode(record, signer=forged, at=NOW),
                               trust=trust, at=NOW)
    assert info.value.reason == "bad_signature"


def test_records_without_colour_or_subject_cannot_be_issued(ring):
    signer = Signer(private_key=ring.active.private_key, kid=ring.active.kid, issuer="HC")
    for record in (Record(subject=Subject(subject_id="AAAAAAAAAAAAAAAA")),
                   Record(subject=Subject(name="Ana"), status="green")):
        with pytest.raises(CodeError) as info:
            NativeAdapter().encode(record, signer=signer, at=NOW)
        assert info.value.reason == "policy_refused"


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=400))
def test_any_text_is_a_code_error_or_nothing(trust, text):
    try:
        NativeAdapter().decode(text, trust=trust, at=NOW)
    except CodeError as error:
        assert error.reason in CODE_REASONS


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_truncations_and_flips_of_a_valid_code_fail_cleanly(code, trust, data):
    position = data.draw(st.integers(0, len(code) - 1))
    if data.draw(st.booleans()):
        mutated = code[:position]
    elif position == len(code) - 1:
        return  # the signature's last character also holds 4 unused padding bits
    else:
        replacement = data.draw(st.sampled_from("ABCabc019-_.="))
        mutated = code[:position] + replacement + code[position + 1:]
    if mutated == code:
        return
    with pytest.raises(CodeError) as info:
        NativeAdapter().decode(mutated, trust=trust, at=NOW)
    assert info.value.reason in CODE_REASONS
