"""A CSCA CRL imported into the trust folder makes the ICAO adapter refuse what it revokes."""
from __future__ import annotations

from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from healthcode.trust import TrustStore
from healthcode.trust.folder import import_list, load_into
from mapping.icao_vds import ICAOVDSAdapter
from tests.mapping.test_icao_vds import NOW, der, make_csca, make_dsc, pov_data, reason_of, sign


def crl_of(csca_key, csca, serials) -> bytes:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(csca.subject)
               .last_update(NOW - timedelta(days=1)).next_update(NOW + timedelta(days=30)))
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial)
            .revocation_date(NOW - timedelta(days=1)).build())
    return builder.sign(csca_key, hashes.SHA384()).public_bytes(serialization.Encoding.DER)


def test_a_revoked_document_signer_is_refused_as_revoked(tmp_path):
    folder = tmp_path / "trust"
    csca_key, csca = make_csca()
    revoked_key, revoked = make_dsc(csca_key, csca, cn="DSC revoked")
    good_key, good = make_dsc(csca_key, csca, cn="DSC good")
    store = TrustStore()
    import_list(folder, der(csca), name="csca.der", store=store)
    load_into(store, folder)
    import_list(folder, crl_of(csca_key, csca, [revoked.serial_number]), name="csca.crl",
                store=store)
    trust = TrustStore()
    load_into(trust, folder)  # the CRL loads after the CSCA it needs, whatever the names
    adapter = ICAOVDSAdapter()
    assert reason_of(adapter, sign(pov_data(), revoked_key, revoked), trust) == "revoked"
    decoded = adapter.decode(sign(pov_data(), good_key, good), trust=trust, at=NOW)
    assert decoded.details["chain"] == "csca"
    # and without the CRL the same signer chains as before
    without = TrustStore()
    without.add_x509(der(csca))
    assert adapter.decode(sign(pov_data(), revoked_key, revoked), trust=without, at=NOW)
