"""What the scanner page is given for offline checks (healthcode/scanner_offline.py)."""
from pathlib import Path

from healthcode import scanner_offline
from mapping.partner_jwt import load_partners
from mapping.registry import Registry

PARTNERS = Path(__file__).resolve().parents[1] / "mapping" / "partners"


def test_partner_layouts_carry_what_the_page_reads_a_code_with():
    layouts = {p["scheme"]: p for p in
               scanner_offline.partner_layouts(Registry(load_partners(PARTNERS)))}
    assert set(layouts) == {"hk", "mo", "cn"}
    hk = layouts["hk"]
    assert hk["prefix"] == "HKHC:" and hk["issuers"] == ["https://healthcode.gov.hk"]
    assert hk["algorithms"] == ["ES256", "PS256"]
    assert hk["claims"]["status"] == "hc" and hk["claims"]["name"] == "p.n"
    assert hk["formats"]["issued_at"] == "iso" and hk["formats"]["not_before"] == "numeric"
    assert hk["status"] == {"0": "green", "1": "refuse", "2": "red"}
    assert hk["documents"]["HKIC"] == "id_card"
    # public facts only: no keys (they come in the signed bundle), no policy internals
    assert not {"keys", "jwks", "policy"} & set(hk)


def test_only_partner_mapping_adapters_have_layouts():
    from mapping.eu_dcc import EUDCCAdapter

    assert scanner_offline.partner_layouts(Registry([EUDCCAdapter()])) == []


def test_the_worker_version_follows_the_assets(app):
    version = scanner_offline.worker_version(app.static_folder)
    assert len(version) == 12 and version == scanner_offline.worker_version(app.static_folder)
    for name in scanner_offline.WORKER_ASSETS:
        assert (Path(app.static_folder) / name).is_file(), name
