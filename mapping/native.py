"""Our own scheme behind the adapter contract: the compact ES256 JWT of :mod:`healthcode.tokens`.

The service verifies its own codes against its key ring (and then online against Redis); this
adapter verifies them against a :class:`~healthcode.trust.TrustStore`, which is what an offline
scanner, a partner, or ``healthcode verify --trust jwks.json`` holds. Our JWK set is trusted
under our issuer id with scheme ``native``.
"""
from __future__ import annotations

from datetime import datetime, timezone

from healthcode import tokens
from healthcode.errors import CodeError
from healthcode.record import Provenance, Record, Subject

from .base import Decoded, MappingAdapter, Signer, check_size


class NativeAdapter(MappingAdapter):
    scheme = "native"
    can_encode = True
    signs_with_ring = True
    #: clock skew tolerated between issuer and scanner, seconds
    skew = 60
    #: the longest an enrolled subject's code lives, when known (the service and `healthcode
    #: verify` set it from their configuration: recognition.bound_native_codes); None: the
    #: largest any configuration allows (tokens.MAX_DYNAMIC_TTL)
    dynamic_lifetime: int | None = None

    def detect(self, text: str) -> bool:
        return isinstance(text, str) and tokens.looks_native(text.strip())

    def decode(self, text: str, *, trust, at: datetime | None = None) -> Decoded:
        try:
            return self._decode(text, trust, at)
        except CodeError:
            raise
        except Exception:  # scanned input is hostile: as in every adapter, nothing else escapes
            raise CodeError("malformed", "the code could not be read") from None

    def _decode(self, text: str, trust, at: datetime | None) -> Decoded:
        text = check_size(text, 4096)
        _, kid = tokens.read_header(text)
        issuer = tokens.unverified_claims(text).get("iss")
        if not isinstance(issuer, str) or not trust.is_trusted_issuer(issuer, self.scheme):
            raise CodeError("untrusted_issuer", "the code's issuer is not trusted")
        key = trust.key(issuer, kid)
        if key is None:
            raise CodeError("unknown_key", "the code is signed with a key we do not know")
        claims = tokens.check_claims(tokens.verified_claims(text, key.key), kid, issuer=issuer,
                                     at=at, skew=self.skew,
                                     dynamic_lifetime=self.dynamic_lifetime)
        record = Record(
            subject=Subject(subject_id=claims.subject_id, masked_name=claims.masked_name),
            status=claims.status,
            provenance=Provenance(scheme=self.scheme, issuer=issuer, source_id=claims.subject_id,
                                  issued_at=claims.issued_at, valid_until=claims.expires_at,
                                  key_id=kid, status_version=claims.status_version))
        return Decoded(record=record, scheme=self.scheme, issuer=issuer, kid=kid,
                       details={"status_version": claims.status_version})

    def encode(self, record: Record, *, signer: Signer, at: datetime | None = None) -> str:
        """Issue a native code for a record that has a status and a subject id."""
        if record.status is None:
            raise CodeError("policy_refused", "a native code needs a colour status")
        if not record.subject.subject_id:
            raise CodeError("policy_refused", "a native code needs a subject id")
        at = at or datetime.now(timezone.utc)
        until = record.provenance.valid_until if record.provenance else None
        ttl = int((until - at).total_seconds()) if until else 300
        if ttl <= 0:
            raise CodeError("expired", "the record's validity has already ended")
        version = (record.provenance.status_version if record.provenance else None) or 0
        iat = int(at.timestamp())
        claims = {"iss": signer.issuer, "sub": record.subject.subject_id, "st": record.status,
                  "sv": version, "iat": iat, "exp": iat + ttl}
        if record.subject.masked_name:
            claims["nm"] = tokens.fit_masked_name(claims, record.subject.masked_name,
                                                  kid=signer.kid)
        return tokens.encode_claims(claims, signer.private_key, signer.kid)
