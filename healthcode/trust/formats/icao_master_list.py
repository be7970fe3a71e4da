"""ICAO CSCA master lists (Doc 9303 part 12, section 9): a CMS SignedData of CSCA certificates.

``ContentInfo { id-signedData, SignedData { encapContentInfo { id-icao-cscaMasterList
(2.23.136.1.1.2), CscaMasterList ::= SEQUENCE { version INTEGER, certList SET OF Certificate }
}, certificates { the Master List Signer certificate }, signerInfos } }``, DER or PEM armoured.
ICAO's PKD and many states (Germany's BSI, for one) publish them; each is signed by a Master
List Signer whose certificate the issuing state's CSCA issued.

The list's own signature is checked before any CSCA is trusted (RFC 5652 section 5.4): the
signer certificate is the one in ``certificates`` that the SignerInfo's ``sid`` names; the
signed attributes hold the content type and a ``messageDigest`` equal to the digest of the
master list; the signature over the DER of the signed attributes verifies with the signer's key;
the signer certificate carries the master-list-signing extended key usage (2.23.136.1.1.3) and
was issued by a CSCA: the configured one (``--signer``, which may also be the Master List Signer
certificate itself) when given, else one already trusted or one in the list. Only a configured
or already trusted anchor says *who* published the list; a list anchored in itself only proves
it is intact, and says so in the source's ``signed_by``.

Corrupt (refused whole): not CMS, not a master list, a certificate no reader can decode, any
signature check failing. Kept and reported: expired CSCAs.

The ASN.1 modules are imported where a master list is read, not at start-up: pyasn1-modules'
RFC 5652 alone costs a third of a second to import, and most deployments hold no master list.
"""
from __future__ import annotations

import base64
import re
from datetime import datetime, timezone

from pyasn1.type import namedtype, univ

from ...certs import Certificate, load_certificate
from ...errors import TrustSignatureError
from ..lists import CertificateEntry, TrustList
from ..signature import digest, verify_with_key

FORMAT = "icao-master-list"
SCHEME = "icao-vds"
ID_CSCA_MASTER_LIST = univ.ObjectIdentifier("2.23.136.1.1.2")
ID_MASTER_LIST_SIGNING = "2.23.136.1.1.3"

DIGESTS = {"1.3.14.3.2.26": "sha1", "2.16.840.1.101.3.4.2.4": "sha224",
           "2.16.840.1.101.3.4.2.1": "sha256", "2.16.840.1.101.3.4.2.2": "sha384",
           "2.16.840.1.101.3.4.2.3": "sha512"}
#: signature algorithms naming their hash; rsaEncryption and id-ecPublicKey take the
#: SignerInfo's digestAlgorithm instead, and RSASSA-PSS its parameters
SIGNATURES = {"1.2.840.10045.4.1": "sha1", "1.2.840.10045.4.3.1": "sha224",
              "1.2.840.10045.4.3.2": "sha256", "1.2.840.10045.4.3.3": "sha384",
              "1.2.840.10045.4.3.4": "sha512", "1.2.840.113549.1.1.5": "sha1",
              "1.2.840.113549.1.1.14": "sha224", "1.2.840.113549.1.1.11": "sha256",
              "1.2.840.113549.1.1.12": "sha384", "1.2.840.113549.1.1.13": "sha512"}
DIGEST_BY_SIGNATURE_KEY = {"1.2.840.113549.1.1.1", "1.2.840.10045.2.1"}
#: DER of id-signedData (1.2.840.113549.1.7.2): detection needs no ASN.1 module, whose import
#: (pyasn1-modules' RFC 5652) costs a third of a second at every start-up
_SIGNED_DATA_OID = bytes.fromhex("06092a864886f70d010702")
_PEM = re.compile(rb"-----BEGIN (?:CMS|PKCS7)-----(.+?)-----END (?:CMS|PKCS7)-----", re.S)


class CscaMasterList(univ.Sequence):
    """Doc 9303-12: ``CscaMasterList ::= SEQUENCE { version, certList SET OF Certificate }``."""

    componentType = namedtype.NamedTypes(
        namedtype.NamedType("version", univ.Integer()),
        namedtype.NamedType("certList", univ.SetOf(componentType=univ.Any())))


def detect(raw: bytes) -> bool:
    """A CMS SignedData (DER: SEQUENCE, then the id-signedData OID near the start, or PEM)."""
    if _PEM.search(raw[:4096] + raw[-200:]) or raw.lstrip().startswith(b"-----BEGIN CMS"):
        return True
    return raw[:1] == b"\x30" and _SIGNED_DATA_OID in raw[:24]


def read(raw: bytes, *, anchors: tuple[Certificate, ...] = (), trusted=(), **_) -> TrustList:
    """Read and check a master list.

    :param anchors: configured signer certificates (``--signer``): when given, the list must
        chain to one of them
    :param trusted: CSCAs already trusted (the data dir's), which may anchor it otherwise
    """
    from pyasn1.codec.ber import decoder as ber_decoder

    der = _unarmour(raw)
    signed_data = _signed_data(der)
    encap = signed_data["encapContentInfo"]
    if encap["eContentType"] != ID_CSCA_MASTER_LIST:
        raise ValueError(f"a CMS SignedData of content type {encap['eContentType']}, not "
                         f"id-icao-cscaMasterList (2.23.136.1.1.2)")
    if not encap["eContent"].isValue:
        raise ValueError("the master list's content is detached; it must be inside the CMS")
    content = bytes(encap["eContent"])
    try:
        master_list, _ = ber_decoder.decode(content, asn1Spec=CscaMasterList())
    except Exception as exc:  # pyasn1 raises its own tree on broken input
        raise ValueError(f"not a CscaMasterList: {exc}") from None
    cscas = []
    for n, item in enumerate(master_list["certList"]):
        try:
            cscas.append(load_certificate(bytes(item)))
        except ValueError as exc:
            raise ValueError(f"certList[{n}]: {exc}") from None
    signer = _check_signature(signed_data, content)
    anchor, anchored_by = _anchor(signer, anchors, tuple(trusted), cscas)
    trust_list = TrustList(format=FORMAT)
    trust_list.signed_by = f"{signer.subject} ({anchored_by}: {anchor.subject})"
    now = datetime.now(timezone.utc)
    if not signer.valid_at(now):
        trust_list.notes.append(f"the master list signer certificate is outside its validity "
                                f"({signer.not_before:%Y-%m-%d} to {signer.not_after:%Y-%m-%d})")
    expired = [c for c in cscas if c.not_after < now]
    if expired:
        trust_list.notes.append(f"{len(expired)} of {len(cscas)} CSCAs have expired (kept: "
                                f"signers they issued while valid still chain to them)")
    seen = set()
    for cert in cscas:
        if cert.sha256 not in seen:
            seen.add(cert.sha256)
            trust_list.certificates.append(CertificateEntry(
                certificate=cert, scheme=SCHEME, country=cert.country, role="CSCA"))
    return trust_list


def _unarmour(raw: bytes) -> bytes:
    match = _PEM.search(raw)
    if match is None:
        return raw
    try:
        return base64.b64decode(b"".join(match.group(1).split()), validate=True)
    except ValueError:
        raise ValueError("PEM armour without base64 inside") from None


def _signed_data(der: bytes):
    from pyasn1.codec.ber import decoder as ber_decoder
    from pyasn1_modules import rfc5652

    try:
        info, _ = ber_decoder.decode(der, asn1Spec=rfc5652.ContentInfo())
        if info["contentType"] != rfc5652.id_signedData:
            raise ValueError(f"a CMS of type {info['contentType']}, not SignedData")
        signed_data, _ = ber_decoder.decode(bytes(info["content"]),
                                            asn1Spec=rfc5652.SignedData())
    except ValueError:
        raise
    except Exception as exc:  # pyasn1's own error tree
        raise ValueError(f"not a CMS SignedData: {exc}") from None
    return signed_data


def _check_signature(signed_data, content: bytes) -> Certificate:
    """Every SignerInfo must verify; returns the (single) signer certificate."""
    from pyasn1.codec.der import encoder as der_encoder
    from pyasn1_modules import rfc5652

    infos = list(signed_data["signerInfos"])
    if not infos:
        raise TrustSignatureError("the master list carries no signature")
    embedded = [bytes(der_encoder.encode(choice["certificate"]))
                for choice in signed_data["certificates"]
                if choice.getName() == "certificate"] if signed_data["certificates"].isValue \
        else []
    signers = []
    for info in infos:
        signer = _signer_certificate(info["sid"], embedded)
        hash_name = DIGESTS.get(str(info["digestAlgorithm"]["algorithm"]))
        if hash_name is None:
            raise TrustSignatureError(f"unsupported digest {info['digestAlgorithm']['algorithm']}")
        if not info["signedAttrs"].isValue:
            raise TrustSignatureError("the master list's signature has no signed attributes "
                                      "(Doc 9303-12 requires them)")
        attributes = {str(a["attrType"]): [bytes(v) for v in a["attrValues"]]
                      for a in info["signedAttrs"]}
        content_type = attributes.get(str(rfc5652.id_contentType), [b""])[0]
        if content_type != der_encoder.encode(ID_CSCA_MASTER_LIST):
            raise TrustSignatureError("the signed content type is not id-icao-cscaMasterList")
        message_digest = attributes.get(str(rfc5652.id_messageDigest), [b""])[0]
        expected = der_encoder.encode(univ.OctetString(digest(hash_name, content)))
        if message_digest != expected:
            raise TrustSignatureError("the master list does not match its signed message "
                                      "digest")
        # RFC 5652 5.4: the signature covers the DER of the attributes as an explicit SET OF
        signed = bytearray(der_encoder.encode(info["signedAttrs"]))
        signed[0] = 0x31
        if not _verify(signer, info["signatureAlgorithm"], hash_name, bytes(info["signature"]),
                       bytes(signed)):
            raise TrustSignatureError(f"the master list's signature does not verify with the "
                                      f"certificate of {signer.subject}")
        signers.append(signer)
    return signers[0]


def _signer_certificate(sid, embedded: list[bytes]) -> Certificate:
    from pyasn1.codec.ber import decoder as ber_decoder
    from pyasn1.codec.der import encoder as der_encoder
    from pyasn1_modules import rfc5280

    for der in embedded:
        cert, _ = ber_decoder.decode(der, asn1Spec=rfc5280.Certificate())
        tbs = cert["tbsCertificate"]
        if sid.getName() == "issuerAndSerialNumber":
            wanted = sid["issuerAndSerialNumber"]
            if (wanted["serialNumber"] == tbs["serialNumber"]
                    and der_encoder.encode(wanted["issuer"]) == der_encoder.encode(tbs["issuer"])):
                return load_certificate(der)
        elif _subject_key_id(tbs) == bytes(sid["subjectKeyIdentifier"]):
            return load_certificate(der)
    raise TrustSignatureError("the master list's signer certificate is not in the CMS")


def _subject_key_id(tbs) -> bytes | None:
    from pyasn1.codec.ber import decoder as ber_decoder
    from pyasn1_modules import rfc5280

    if not tbs["extensions"].isValue:
        return None
    for ext in tbs["extensions"]:
        if str(ext["extnID"]) == "2.5.29.14":
            value, _ = ber_decoder.decode(bytes(ext["extnValue"]),
                                          asn1Spec=rfc5280.SubjectKeyIdentifier())
            return bytes(value)
    return None


def _verify(signer: Certificate, algorithm, hash_name: str, signature: bytes,
            data: bytes) -> bool:
    from pyasn1.codec.ber import decoder as ber_decoder
    from pyasn1_modules import rfc4055

    oid = str(algorithm["algorithm"])
    if oid == str(rfc4055.id_RSASSA_PSS):
        params = rfc4055.RSASSA_PSS_params()
        if algorithm["parameters"].isValue:
            params, _ = ber_decoder.decode(bytes(algorithm["parameters"]), asn1Spec=params)
        pss_hash = DIGESTS.get(str(params["hashAlgorithm"]["algorithm"]), "sha1")
        return verify_with_key(signer.public_key, signature, data, pss_hash,
                               pss_salt=int(params["saltLength"]))
    if oid in SIGNATURES:
        return verify_with_key(signer.public_key, signature, data, SIGNATURES[oid])
    if oid in DIGEST_BY_SIGNATURE_KEY:
        return verify_with_key(signer.public_key, signature, data, hash_name)
    raise TrustSignatureError(f"unsupported signature algorithm {oid}")


def _anchor(signer: Certificate, anchors, trusted, cscas) -> tuple[Certificate, str]:
    """The CSCA that issued the Master List Signer (see the module docstring)."""
    eku = signer.extended_key_usage
    if eku is None or ID_MASTER_LIST_SIGNING not in eku:
        raise TrustSignatureError("the signer certificate lacks the master list signing "
                                  "extended key usage (2.23.136.1.1.3, Doc 9303-12)")
    if anchors:
        for anchor in anchors:
            if anchor.sha256 == signer.sha256:
                return anchor, "configured signer"
            if _issued_by(signer, anchor):
                return anchor, "configured CSCA"
        raise TrustSignatureError("the master list signer was not issued by the configured "
                                  "signer certificate")
    for label, pool in (("trusted CSCA", trusted), ("CSCA in the list itself", cscas)):
        for csca in pool:
            if _issued_by(signer, csca):
                return csca, label
    raise TrustSignatureError("the master list signer chains to no CSCA (neither trusted nor "
                              "in the list): name the issuing CSCA with --signer")


def _issued_by(cert: Certificate, issuer: Certificate) -> bool:
    """``issuer`` is a CA (where it says) that signed ``cert``."""
    from cryptography import x509

    if cert.parsed is None or issuer.parsed is None or cert.issuer != issuer.subject:
        return False
    try:
        if not issuer.parsed.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
    except x509.ExtensionNotFound:
        pass
    except ValueError:
        pass  # an extension block cryptography refuses: the signature below still decides
    try:
        cert.parsed.verify_directly_issued_by(issuer.parsed)
    except Exception:  # InvalidSignature, ValueError, TypeError for unusual algorithms
        return False
    return True
