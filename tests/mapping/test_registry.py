"""Adapters are found through entry points: a new scheme plugs in without touching the core,
and every way a lookup can go wrong has its own clear error, at start-up."""
import json
import textwrap

import pytest

from healthcode import create_app
from mapping import (BrokenAdapter, DuplicateScheme, MappingAdapter, Registry, UnknownScheme,
                     available_schemes, get_adapter)

DEMO_MODULE = '''
"""A third party's scheme: 'DEMO1:' + a compact ES256 JWS over a small JSON record."""
from datetime import datetime, timezone

import jwt

from mapping import CodeError, Decoded, MappingAdapter
from healthcode.record import Provenance, Record, Subject


class DemoAdapter(MappingAdapter):
    can_encode = True
    signs_with_ring = True

    def detect(self, text):
        return text.startswith("DEMO1:")

    def decode(self, text, *, trust, at=None):
        token = text[len("DEMO1:"):]
        try:
            header = jwt.get_unverified_header(token)
            issuer = jwt.decode(token, options={"verify_signature": False})["iss"]
        except (jwt.PyJWTError, KeyError):
            raise CodeError("malformed", "not a demo code") from None
        key = trust.key(issuer, header.get("kid", ""))
        if key is None:
            raise CodeError("unknown_key", "unknown demo key")
        try:
            claims = jwt.decode(token, key.key, algorithms=["ES256"])
        except jwt.InvalidSignatureError:
            raise CodeError("bad_signature", "bad demo signature") from None
        except jwt.ExpiredSignatureError:
            raise CodeError("expired", "expired demo code") from None
        record = Record(subject=Subject(name=claims["name"]), status=claims["colour"],
                        provenance=Provenance(scheme=self.scheme, issuer=issuer,
                                              source_id=claims["id"],
                                              valid_until=claims["exp"]))
        return Decoded(record=record, scheme=self.scheme, issuer=issuer, kid=header["kid"])

    def encode(self, record, *, signer, at=None):
        at = at or datetime.now(timezone.utc)
        claims = {"iss": signer.issuer, "name": record.subject.name or "",
                  "colour": record.status, "id": record.subject.subject_id or "",
                  "exp": int(record.provenance.valid_until.timestamp())}
        return "DEMO1:" + jwt.encode(claims, signer.private_key, algorithm="ES256",
                                     headers={"kid": signer.kid})
'''


def install_package(root, name, entry_points: str, module_source: str | None = None,
                    module_name: str = "demo_scheme"):
    """A package the way pip leaves it: the module plus its dist-info with entry points."""
    if module_source is not None:
        (root / f"{module_name}.py").write_text(module_source)
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


def test_the_built_in_schemes_are_registered():
    assert {"native", "eu-dcc", "shc", "icao-vds"} <= set(available_schemes())
    assert isinstance(get_adapter("eu-dcc"), MappingAdapter)


def test_an_unknown_scheme_is_a_distinct_error():
    with pytest.raises(UnknownScheme) as info:
        get_adapter("atlantis")
    assert isinstance(info.value, KeyError)
    assert "atlantis" in str(info.value)


def test_two_adapters_claiming_one_name_fail_at_start_up(tmp_path, monkeypatch):
    install_package(tmp_path, "rival-dcc", """
        [healthcode.mappings]
        eu-dcc = demo_scheme:DemoAdapter
    """, DEMO_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(DuplicateScheme) as info:
        Registry.from_entry_points()
    assert "eu-dcc" in info.value.message and "demo_scheme:DemoAdapter" in info.value.message


def test_an_adapter_that_fails_to_import_fails_at_start_up(tmp_path, monkeypatch, app):
    install_package(tmp_path, "broken-scheme", """
        [healthcode.mappings]
        broken = broken_scheme:Adapter
    """, "raise ImportError('a dependency is missing')\n", module_name="broken_scheme")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(BrokenAdapter) as info:
        create_app({**app.config, "TESTING": True})
    assert "broken" in info.value.message and "a dependency is missing" in info.value.message


def test_something_that_is_not_an_adapter_is_refused(tmp_path, monkeypatch):
    install_package(tmp_path, "not-an-adapter", """
        [healthcode.mappings]
        odd = json:dumps
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(BrokenAdapter):
        Registry.from_entry_points()


def test_a_separately_installed_package_adds_a_scheme_end_to_end(tmp_path, monkeypatch, app,
                                                                  creds):
    """No change to the core: one entry point, one trust file, one policy file."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    install_package(tmp_path, "healthcode-demo", """
        [healthcode.mappings]
        demo = demo_scheme:DemoAdapter
    """, DEMO_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))

    data_dir = tmp_path / "plugged"
    partner_key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(partner_key.public_key()))
    (data_dir / "trust").mkdir(parents=True)
    (data_dir / "trust" / "demo.jwks.json").write_text(json.dumps(
        {"issuer": "https://demo.example", "scheme": "demo", "keys": [{**jwk, "kid": "d1"}]}))
    (data_dir / "policies").mkdir()
    (data_dir / "policies" / "demo.toml").write_text('scheme = "demo"\n[policy]\n'
                                                    'accept = ["green"]\n')
    plugged = create_app({**app.config, "DATA_DIR": str(data_dir)})
    client = plugged.test_client()
    store = plugged.extensions["healthcode.store"]
    _, partner = store.create_credential("partner")
    _, checkpoint = store.create_credential("checkpoint")

    schemes = {s["scheme"]: s for s in client.get("/api/v1/schemes").get_json()["schemes"]}
    assert schemes["demo"]["decode"] and schemes["demo"]["agreement"]

    import time
    code = "DEMO1:" + jwt.encode({"iss": "https://demo.example", "name": "Ana Lopes",
                                  "colour": "green", "id": "demo-42",
                                  "exp": int(time.time()) + 3600},
                                 partner_key, algorithm="ES256", headers={"kid": "d1"})
    verified = client.post("/api/v1/verify", json={"code": code},
                           headers={"Authorization": f"Bearer {checkpoint}"}).get_json()
    assert verified["valid"] and verified["scheme"] == "demo" and verified["status"] == "green"

    converted = client.post("/api/v1/convert", json={"code": code, "to": "native"},
                            headers={"Authorization": f"Bearer {partner}"})
    assert converted.status_code == 200, converted.get_json()
    body = converted.get_json()
    assert body["scheme"] == "native" and body["source_scheme"] == "demo"
    assert body["record"]["subject"]["masked_name"] == "A*a L***s"
    answer = client.post("/api/v1/verify", json={"code": body["code"]},
                         headers={"Authorization": f"Bearer {checkpoint}"}).get_json()
    assert answer["valid"] and answer["status"] == "green" and answer["checked_online"]

    back = client.post("/api/v1/convert", json={"code": body["code"], "to": "demo"},
                       headers={"Authorization": f"Bearer {partner}"})
    assert back.status_code == 200, back.get_json()
    assert back.get_json()["code"].startswith("DEMO1:")
