"""The key ring: kid from the public key, one active key, rotation, retirement, 0600 files."""
import json
import stat

import pytest

from healthcode.errors import ConfigurationError
from healthcode.keys import KeyRing, kid_for


@pytest.fixture
def ring(tmp_path):
    return KeyRing(tmp_path / "keys", reload_interval=0)


def test_first_key_becomes_active_and_kid_is_derived_from_the_public_key(ring):
    key = ring.generate()
    assert ring.active.kid == key.kid == kid_for(key.public_key)


def test_private_key_files_are_readable_by_the_owner_only(ring):
    key = ring.generate()
    mode = stat.S_IMODE((ring.directory / f"{key.kid}.pem").stat().st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(ring.directory.stat().st_mode) == 0o700


def test_rotation_activates_a_new_key_and_keeps_the_old_one_verifying(ring):
    old = ring.generate()
    new = ring.rotate()
    assert ring.active.kid == new.kid != old.kid
    assert ring.verification_key(old.kid) is not None
    assert {k["kid"] for k in ring.jwks()["keys"]} == {old.kid, new.kid}


def test_retired_keys_no_longer_verify_and_leave_the_jwks(ring):
    old = ring.generate()
    ring.rotate()
    ring.retire(old.kid)
    assert ring.verification_key(old.kid) is None
    assert old.kid not in {k["kid"] for k in ring.jwks()["keys"]}


def test_the_active_key_cannot_be_retired(ring):
    key = ring.generate()
    with pytest.raises(ConfigurationError):
        ring.retire(key.kid)


def test_jwks_holds_public_keys_only(ring):
    ring.generate()
    for jwk in ring.jwks()["keys"]:
        assert "d" not in jwk
        assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}


def test_another_process_sees_a_rotation_without_restarting(ring, tmp_path):
    ring.generate()
    other = KeyRing(tmp_path / "keys", reload_interval=0)
    new = ring.rotate()
    assert other.active.kid == new.kid


def test_a_key_file_whose_name_does_not_match_its_key_is_refused(ring):
    key = ring.generate()
    (ring.directory / f"{key.kid}.pem").rename(ring.directory / "AAAAAAAA.pem")
    (ring.directory / "ring.json").write_text(json.dumps({}))
    with pytest.raises(ConfigurationError):
        KeyRing(ring.directory)
