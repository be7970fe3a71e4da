"""Test PKI for trust imports: CSCAs, signers, DSC lists, ICAO master lists and CRLs.

Every key is generated here, per test run, so no private key is ever committed. Master lists are
built as Doc 9303 part 12 describes them (CMS SignedData of a CscaMasterList, signed attributes
with content type and message digest), with pyasn1-modules' RFC 5652 types and keys from
``cryptography``.
"""
from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from pyasn1.codec.der import decoder as der_decoder, encoder as der_encoder
from pyasn1.type import univ
from pyasn1_modules import rfc5280, rfc5652

from healthcode.trust.formats.icao_master_list import (CscaMasterList, ID_CSCA_MASTER_LIST,
                                                       ID_MASTER_LIST_SIGNING)

NOW = datetime.now(timezone.utc)
SHA256 = univ.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
ECDSA_SHA256 = univ.ObjectIdentifier("1.2.840.10045.4.3.2")


def name(cn: str, country: str = "UT") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, country),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def certificate(subject: x509.Name, key, *, issuer=None, issuer_key=None, ca=False,
                eku=None, not_before=None, not_after=None, serial=None):
    """A certificate for ``key`` (self-signed unless ``issuer``/``issuer_key`` are given)."""
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer or subject).public_key(key.public_key())
               .serial_number(serial or x509.random_serial_number())
               .not_valid_before(not_before or NOW - timedelta(days=30))
               .not_valid_after(not_after or NOW + timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None),
                              critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [x509.ObjectIdentifier(o) for o in eku]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def der(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def new_key():
    return ec.generate_private_key(ec.SECP256R1())


class Csca:
    """A country's CSCA with a Master List Signer it issued."""

    def __init__(self, country: str = "UT", **kwargs):
        self.key = new_key()
        self.cert = certificate(name(f"CSCA {country}", country), self.key, ca=True, **kwargs)
        self.signer_key = new_key()
        self.signer = self.issue(name(f"Master List Signer {country}", country),
                                 self.signer_key, eku=[ID_MASTER_LIST_SIGNING])

    def issue(self, subject, key, **kwargs):
        return certificate(subject, key, issuer=self.cert.subject, issuer_key=self.key,
                           **kwargs)

    def crl(self, revoked_serials, *, last_update=None, next_update=None, key=None) -> bytes:
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
                   .last_update(last_update or NOW - timedelta(hours=1))
                   .next_update(next_update or NOW + timedelta(days=30)))
        for serial in revoked_serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(NOW - timedelta(hours=2)).build())
        return builder.sign(key or self.key, hashes.SHA256()).public_bytes(
            serialization.Encoding.DER)


def master_list(certs, signer_cert, signer_key, *, tamper_content: bool = False,
                wrong_digest: bool = False, embed_signer: bool = True,
                content_type=ID_CSCA_MASTER_LIST) -> bytes:
    """A CMS SignedData holding a CscaMasterList of ``certs``, signed by ``signer_cert``."""
    content = CscaMasterList()
    content["version"] = 0
    for n, cert in enumerate(certs):
        content["certList"][n] = univ.Any(der(cert))
    econtent = der_encoder.encode(content)
    digest = hashlib.sha256(econtent).digest()
    if wrong_digest:
        digest = hashlib.sha256(b"another list").digest()

    signer_asn1, _ = der_decoder.decode(der(signer_cert), asn1Spec=rfc5280.Certificate())
    info = rfc5652.SignerInfo()
    info["version"] = 1
    sid = info["sid"]
    sid["issuerAndSerialNumber"]["issuer"] = signer_asn1["tbsCertificate"]["issuer"]
    sid["issuerAndSerialNumber"]["serialNumber"] = \
        signer_asn1["tbsCertificate"]["serialNumber"]
    info["digestAlgorithm"]["algorithm"] = SHA256
    for n, (oid, value) in enumerate(((rfc5652.id_contentType, content_type),
                                      (rfc5652.id_messageDigest, univ.OctetString(digest)))):
        attribute = rfc5652.Attribute()
        attribute["attrType"] = oid
        attribute["attrValues"][0] = univ.Any(der_encoder.encode(value))
        info["signedAttrs"][n] = attribute
    signed = bytearray(der_encoder.encode(info["signedAttrs"]))
    signed[0] = 0x31
    if isinstance(signer_key, rsa.RSAPrivateKey):  # RSASSA-PSS, SHA-256, salt 32
        from pyasn1_modules import rfc4055
        info["signatureAlgorithm"]["algorithm"] = rfc4055.id_RSASSA_PSS
        params, _ = der_decoder.decode(der_encoder.encode(rfc4055.rSASSA_PSS_SHA256_Params),
                                       asn1Spec=rfc4055.RSASSA_PSS_params())
        params["saltLength"] = 32
        info["signatureAlgorithm"]["parameters"] = der_encoder.encode(params)
        info["signature"] = signer_key.sign(bytes(signed), padding.PSS(
            padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    else:
        info["signatureAlgorithm"]["algorithm"] = ECDSA_SHA256
        info["signature"] = signer_key.sign(bytes(signed), ec.ECDSA(hashes.SHA256()))

    signed_data = rfc5652.SignedData()
    signed_data["version"] = 3
    signed_data["digestAlgorithms"][0]["algorithm"] = SHA256
    encap = signed_data["encapContentInfo"]
    encap["eContentType"] = content_type
    encap["eContent"] = econtent + (b"\x00" if tamper_content else b"")
    if embed_signer:
        signed_data["certificates"][0]["certificate"] = signer_asn1
    signed_data["signerInfos"][0] = info
    content_info = rfc5652.ContentInfo()
    content_info["contentType"] = rfc5652.id_signedData
    content_info["content"] = univ.Any(der_encoder.encode(signed_data))
    return der_encoder.encode(content_info)


def dcc_kid(cert) -> str:
    return base64.b64encode(hashlib.sha256(der(cert)).digest()[:8]).decode()


def dsc_list(entries, *, reduced: bool = False) -> bytes:
    """A DSC list in the backend/SDK shape; ``entries`` are (certificate, country) pairs or
    anything else, used as is (for corrupt entries)."""
    out = []
    for entry in entries:
        if not isinstance(entry, tuple):
            out.append(entry)
            continue
        cert, country = entry
        item = {"kid": dcc_kid(cert), "rawData": base64.b64encode(der(cert)).decode()}
        if not reduced:
            item.update(certificateType="DSC", country=country,
                        thumbprint=hashlib.sha256(der(cert)).hexdigest(),
                        timestamp="2026-11-01T10:00:00+01:00")
        out.append(item)
    return json.dumps({"certificates": out}).encode()


def dsc(country: str = "UT", **kwargs):
    """A self-signed EU DCC document signer of ``country``."""
    key = new_key()
    return certificate(name(f"DSC {country}", country), key, **kwargs), key


def jwk(key, kid: str | None = None) -> dict:
    import jwt

    member = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    if kid:
        member["kid"] = kid
    return member


def ldif(*entries: tuple[str, str, bytes]) -> bytes:
    """An ICAO PKD style LDIF: (dn, attribute, binary value) entries, lines folded at 76."""
    out = ["version: 1", ""]
    for dn, attribute, value in entries:
        line = f"{attribute}:: {base64.b64encode(value).decode()}"
        folded = [line[:76]] + [" " + line[i:i + 75] for i in range(76, len(line), 75)]
        out += [f"dn: {dn}", "objectClass: top", "sn: 1", *folded, ""]
    return "\n".join(out).encode()
