"""Reading and checking a partner mapping file: the schema behind :mod:`mapping.partner_jwt`.

A mapping file is configuration an operator writes by hand for one agreement with one partner
region. Every mistake in it stops the service at start-up with a :class:`MappingFileError` that
names the file and the field (``mappings/mo.toml: status.decode."Y": must be ...``), and an
unknown key is an error, because a silently ignored typo is worse than a refusal: a misspelt
``[status.decode]`` row would turn away good codes, a misspelt ``[claims]`` key would drop a fact
from every record. Only the ``[policy]`` table is kept as written (:attr:`PartnerMapping.policy`):
the conversion engine owns its meaning and checks it.

Besides the shape of each field, a file must be consistent with itself:

- claim paths are distinct and none lies inside another (``p`` and ``p.n`` cannot both be
  claims), and none is ``iss``, which the adapter reads and writes itself;
- optional claim groups are all-or-nothing: the three ``document_*`` claims, the three
  ``test_*`` claims; ``vaccination_complete`` needs ``vaccination_doses``;
- every ``[status.encode]`` and ``[documents.encode]`` value reads back, through the matching
  ``decode`` table, as the value it was issued for: a code we issue must mean the same thing to
  us as it does to the partner;
- ``encode.algorithm`` is one of ``algorithms``: we never issue what we would refuse to read.
"""
from __future__ import annotations

import difflib
import json
import re
import tomllib
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from healthcode.errors import ConfigurationError
from healthcode.record import STATUSES

__all__ = ["MappingFileError", "PartnerMapping", "ClaimMap", "EncodeSettings", "load_mapping",
           "SUPPORTED_ALGORITHMS", "REFUSE", "TIME_FORMATS"]

#: Asymmetric JWS algorithms a partner may be allowed. HS* and "none" are never allowed: with a
#: shared secret every verifier could forge codes, and "none" is no signature at all.
SUPPORTED_ALGORITHMS = ("ES256", "ES384", "ES512", "PS256", "EdDSA")
#: The ``[status.decode]`` verdict that refuses a partner value explicitly.
REFUSE = "refuse"
#: How a time claim is written: POSIX seconds (JWT's NumericDate) or an ISO 8601 string.
TIME_FORMATS = ("numeric", "iso")
#: Time claims whose format ``[claims.formats]`` may set.
TIME_CLAIMS = ("issued_at", "valid_until", "not_before", "test_sampled_at")
#: Longest validity a file may give the codes we issue: a health code lasting more than a
#: month no longer says anything about someone's health today.
MAX_TTL = 30 * 24 * 3600

_SCHEME = re.compile(r"^[a-z0-9-]{2,32}$")
_REGION = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:/_+-]{0,15}$")
_CLAIM_PATH = re.compile(r"^[^.\s\"]+(\.[^.\s\"]+)*$")
_DOCUMENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
_NO_SPACE = re.compile(r"^\S+$")

_TOP_LEVEL = ("scheme", "name", "region", "issuers", "algorithms", "prefix", "claims", "status",
              "documents", "encode", "policy")
_REQUIRED_CLAIMS = ("subject", "name", "status")
_DEFAULT_CLAIMS = {"issued_at": "iat", "valid_until": "exp"}
_OPTIONAL_CLAIMS = ("name_latin", "birth_date", "document_type", "document_number",
                    "document_region", "not_before", "code_id", "test_type", "test_result",
                    "test_sampled_at", "vaccination_doses", "vaccination_complete")
_CLAIM_GROUPS = (("document_type", "document_number", "document_region"),
                 ("test_type", "test_result", "test_sampled_at"))


class MappingFileError(ConfigurationError):
    """A partner mapping file cannot be read or breaks the schema.

    :param file: the file, as the operator named it
    :param field: the dotted path of the offending field (``None`` for the file as a whole)
    :param problem: what is wrong, in words an operator can act on
    """

    def __init__(self, file: str | PathLike, field: str | None, problem: str):
        self.file = str(file)
        self.field = field
        self.problem = problem
        where = f"{self.file}: {field}" if field else self.file
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class ClaimMap:
    """Where each canonical fact sits in a partner's claims (dotted paths for nested objects)."""

    subject: str
    name: str
    status: str
    issued_at: str = "iat"
    valid_until: str = "exp"
    name_latin: str | None = None
    birth_date: str | None = None
    document_type: str | None = None
    document_number: str | None = None
    document_region: str | None = None
    not_before: str | None = None
    code_id: str | None = None
    test_type: str | None = None
    test_result: str | None = None
    test_sampled_at: str | None = None
    vaccination_doses: str | None = None
    vaccination_complete: str | None = None
    #: time claim name -> "numeric" | "iso"; absent names are numeric
    formats: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def time_format(self, name: str) -> str:
        return self.formats.get(name, "numeric")

    @property
    def has_document(self) -> bool:
        return self.document_type is not None

    @property
    def has_test(self) -> bool:
        return self.test_type is not None

    @property
    def has_vaccination(self) -> bool:
        return self.vaccination_doses is not None

    def paths(self) -> dict[str, str]:
        """Canonical fact -> claim path, for the facts this partner carries."""
        names = (*_REQUIRED_CLAIMS, *_DEFAULT_CLAIMS, *_OPTIONAL_CLAIMS)
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


@dataclass(frozen=True)
class EncodeSettings:
    """How we issue codes in the partner's format (the ``[encode]`` table)."""

    #: our issuer id as the partner knows it; ``None``: the signer's issuer
    issuer: str | None = None
    algorithm: str = "ES256"
    ttl: int = 3600
    typ: str | None = None


@dataclass(frozen=True)
class PartnerMapping:
    """One partner's mapping file, checked and immutable."""

    file: str
    scheme: str
    name: str
    region: str
    issuers: tuple[str, ...]
    algorithms: tuple[str, ...]
    claims: ClaimMap
    #: partner value (as text) -> "green" | "yellow" | "red" | "refuse"
    status_decode: Mapping[str, str] = field(hash=False)
    #: our status -> the partner's value (a string or an integer, as the partner writes it)
    status_encode: Mapping[str, str | int] = field(hash=False)
    #: partner document type -> ours
    documents_decode: Mapping[str, str] = field(hash=False)
    #: our document type -> the partner's
    documents_encode: Mapping[str, str] = field(hash=False)
    encode: EncodeSettings = EncodeSettings()
    prefix: str | None = None
    #: the raw ``[policy]`` table, for the conversion engine
    policy: Mapping[str, Any] = field(default_factory=dict, hash=False)


def load_mapping(path: str | PathLike) -> PartnerMapping:
    """Read and check one mapping file; raise :class:`MappingFileError` naming file and field."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise MappingFileError(path, None, f"not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise MappingFileError(path, None, "not UTF-8 text") from None
    except OSError as exc:
        raise MappingFileError(path, None, f"cannot be read: {exc.strerror or exc}") from None
    return _parse(data, str(path))


# -- reading tables ---------------------------------------------------------------------------

def _quote(key: str) -> str:
    """A key as TOML would need it written in a dotted path (bare where it can be), or a list
    item such as ``algorithms[1]``."""
    if re.fullmatch(r"[A-Za-z0-9_-]+(\[[0-9]+\])?", key):
        return key
    return json.dumps(key, ensure_ascii=False)


class _Table:
    """One TOML table being read: each key taken is ticked off, and what is left is a typo."""

    def __init__(self, data: dict, file: str, path: str = ""):
        self.data, self.file, self.path = data, file, path
        self._taken: set[str] = set()

    def where(self, key: str, *, quoted: bool = False) -> str:
        """The dotted field path of ``key``; ``quoted`` for keys that are data, not schema."""
        name = json.dumps(key, ensure_ascii=False) if quoted else _quote(key)
        return f"{self.path}.{name}" if self.path else name

    def fail(self, key: str | None, problem: str, *, quoted: bool = False):
        raise MappingFileError(self.file, self.where(key, quoted=quoted) if key else
                               (self.path or None), problem)

    def take(self, key: str, *, required: bool = False) -> Any:
        self._taken.add(key)
        if key not in self.data:
            if required:
                self.fail(key, "required")
            return None
        return self.data[key]

    def string(self, key: str, *, required: bool = False, pattern: re.Pattern | None = None,
               explain: str = "", max_len: int = 200) -> str | None:
        value = self.take(key, required=required)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(key, "must be a non-empty string")
        if len(value) > max_len:
            self.fail(key, f"longer than {max_len} characters")
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(key, f"{json.dumps(value, ensure_ascii=False)}: {explain}")
        return value

    def strings(self, key: str, *, required: bool = False) -> list[str]:
        """A non-empty list of distinct strings without spaces."""
        value = self.take(key, required=required)
        if value is None:
            return []
        if not isinstance(value, list) or not value:
            self.fail(key, "must be a non-empty list of strings")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not _NO_SPACE.fullmatch(item):
                self.fail(f"{key}[{i}]", "must be a non-empty string without spaces")
            if item in value[:i]:
                self.fail(f"{key}[{i}]", f"{item!r} is listed twice")
        return value

    def integer(self, key: str, *, default: int, low: int, high: int) -> int:
        value = self.take(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(key, f"must be a whole number from {low} to {high}")
        return value

    def table(self, key: str, *, required: bool = False) -> "_Table | None":
        value = self.take(key, required=required)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.fail(key, "must be a table")
        return _Table(value, self.file, self.where(key))

    def finish(self, known: tuple[str, ...] | None = None) -> None:
        """Refuse keys nobody took, suggesting the closest known key: they are typos."""
        for key in self.data:
            if key not in self._taken:
                near = difflib.get_close_matches(key, known or sorted(self._taken), n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                self.fail(key, f"unknown key{hint}")


# -- the schema -------------------------------------------------------------------------------

def _parse(data: dict, file: str) -> PartnerMapping:
    top = _Table(data, file)
    scheme = top.string("scheme", required=True, pattern=_SCHEME,
                        explain="must be 2 to 32 characters of a-z, 0-9 and -")
    name = top.string("name", required=True)
    region = top.string("region", required=True, pattern=_REGION,
                        explain="must be a region code such as MO, HK or CN-GD")
    issuers = tuple(top.strings("issuers", required=True))
    algorithms = _algorithms(top)
    prefix = top.string("prefix", pattern=_PREFIX,
                        explain="must be 1 to 16 characters of A-Z, a-z, 0-9 and :/_+- "
                                "starting with a letter or digit")
    claims = _claims(top.table("claims", required=True))
    status_decode, status_encode = _status(top.table("status", required=True))
    documents_decode, documents_encode = _documents(top, claims)
    encode = _encode(top, algorithms, issues=bool(status_encode))
    policy = top.take("policy")
    if policy is not None and not isinstance(policy, dict):
        top.fail("policy", "must be a table")
    top.finish(_TOP_LEVEL)
    return PartnerMapping(
        file=file, scheme=scheme, name=name, region=region, issuers=issuers,
        algorithms=algorithms, claims=claims, status_decode=status_decode,
        status_encode=status_encode, documents_decode=documents_decode,
        documents_encode=documents_encode, encode=encode, prefix=prefix, policy=policy or {})


def _algorithms(top: _Table) -> tuple[str, ...]:
    names = top.strings("algorithms", required=True)
    for i, alg in enumerate(names):
        if alg.lower() == "none" or alg.upper().startswith("HS"):
            top.fail(f"algorithms[{i}]", f"{alg!r} is never accepted: an unsigned or "
                     f"shared-secret code can be forged by anyone who can verify it")
        if alg not in SUPPORTED_ALGORITHMS:
            top.fail(f"algorithms[{i}]", f"{alg!r} is not one of "
                     f"{', '.join(SUPPORTED_ALGORITHMS)}")
    return tuple(names)


def _claims(table: _Table) -> ClaimMap:
    paths: dict[str, str] = {}
    for name in (*_REQUIRED_CLAIMS, *_DEFAULT_CLAIMS, *_OPTIONAL_CLAIMS):
        path = table.string(name, required=name in _REQUIRED_CLAIMS, pattern=_CLAIM_PATH,
                            explain="must be a claim name, dotted for nested objects "
                                    "(no spaces or quotes)", max_len=128)
        if path is None:
            path = _DEFAULT_CLAIMS.get(name)
        if path is not None:
            paths[name] = path
    formats = _formats(table.table("formats"), paths)
    table.finish()
    _check_groups(table, paths)
    _check_paths(table, paths)
    return ClaimMap(**paths, formats=MappingProxyType(formats))


def _formats(table: _Table | None, paths: dict[str, str]) -> dict[str, str]:
    if table is None:
        return {}
    formats = {}
    for name in TIME_CLAIMS:
        value = table.take(name)
        if value is None:
            continue
        if value not in TIME_FORMATS:
            table.fail(name, 'must be "numeric" or "iso"')
        if name not in paths:
            table.fail(name, f"no {name} claim is mapped in [claims]")
        formats[name] = value
    table.finish(TIME_CLAIMS)
    return formats


def _check_groups(table: _Table, paths: dict[str, str]) -> None:
    """All-or-nothing groups: half a document or half a test is no fact at all."""
    for group in _CLAIM_GROUPS:
        present = [n for n in group if n in paths]
        if present and len(present) != len(group):
            missing = next(n for n in group if n not in paths)
            table.fail(missing, f"required together with {', '.join(present)}")
    if "vaccination_complete" in paths and "vaccination_doses" not in paths:
        table.fail("vaccination_doses", "required together with vaccination_complete")


def _check_paths(table: _Table, paths: dict[str, str]) -> None:
    """Each claim path names one value: encoding writes every path into the same object."""
    seen: dict[str, str] = {}
    for name, path in paths.items():
        if path.split(".")[0] == "iss":
            table.fail(name, '"iss" is the issuer, which the adapter reads and writes itself')
        for other_name, other in seen.items():
            if path == other:
                table.fail(name, f"same claim as {other_name} ({path!r})")
            if path.startswith(other + ".") or other.startswith(path + "."):
                table.fail(name, f"{path!r} and {other_name}'s {other!r} overlap: one would "
                                 f"have to be both a value and an object")
        seen[name] = path


def _status(table: _Table) -> tuple[Mapping[str, str], Mapping[str, str | int]]:
    decode_table = table.table("decode", required=True)
    decode = {}
    for value, verdict in decode_table.data.items():
        if verdict not in (*STATUSES, REFUSE):
            decode_table.fail(value, 'must be green, yellow, red or "refuse"', quoted=True)
        decode[value] = verdict
    if not decode:
        table.fail("decode", "must map at least one partner value")
    encode = {}
    encode_table = table.table("encode")
    if encode_table is not None:
        for status in encode_table.data:
            if status not in STATUSES:
                encode_table.fail(status, "must be one of green, yellow, red", quoted=True)
            value = encode_table.data[status]
            if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
                encode_table.fail(status, "must be the partner's value: a string or a whole "
                                          "number", quoted=True)
            if decode.get(str(value)) != status:
                encode_table.fail(status, f"the partner value {value!r} reads back as "
                                  f"{decode.get(str(value), 'unknown')!r} in status.decode; a "
                                  f"code we issue must mean the same to us", quoted=True)
            encode[status] = value
    table.finish(("decode", "encode"))
    return MappingProxyType(decode), MappingProxyType(encode)


def _documents(top: _Table, claims: ClaimMap) -> tuple[Mapping[str, str], Mapping[str, str]]:
    table = top.table("documents", required=claims.has_document)
    if table is None:
        return MappingProxyType({}), MappingProxyType({})
    if not claims.has_document:
        top.fail("documents", "no document claims are mapped in [claims]")
    decode_table = table.table("decode", required=True)
    decode = {}
    for value, ours in decode_table.data.items():
        if not isinstance(ours, str) or not _DOCUMENT_TYPE.fullmatch(ours) or ours == REFUSE:
            decode_table.fail(value, "must be one of our document types (id_card, passport, "
                                     "travel_permit, ...); leave a value out to refuse it",
                              quoted=True)
        decode[value] = ours
    if not decode:
        table.fail("decode", "must map at least one partner document type")
    encode = {}
    encode_table = table.table("encode")
    if encode_table is not None:
        for ours, value in encode_table.data.items():
            if not isinstance(value, str) or decode.get(value) != ours:
                encode_table.fail(ours, f"the partner value {value!r} does not read back as "
                                  f"{ours!r} in documents.decode", quoted=True)
            encode[ours] = value
    table.finish(("decode", "encode"))
    return MappingProxyType(decode), MappingProxyType(encode)


def _encode(top: _Table, algorithms: tuple[str, ...], *, issues: bool) -> EncodeSettings:
    table = top.table("encode")
    if table is None:
        settings = EncodeSettings()
    else:
        issuer = table.string("issuer", pattern=_NO_SPACE, explain="must not contain spaces")
        algorithm = table.string("algorithm") or EncodeSettings.algorithm
        ttl = table.integer("ttl", default=EncodeSettings.ttl, low=1, high=MAX_TTL)
        typ = table.string("typ", max_len=32)
        table.finish(("issuer", "algorithm", "ttl", "typ"))
        settings = EncodeSettings(issuer=issuer, algorithm=algorithm, ttl=ttl, typ=typ)
    # Only a file that issues (has [status.encode]) needs an algorithm to issue with; a
    # read-only agreement may allow algorithms our keys cannot make, such as PS256 alone.
    if issues and settings.algorithm not in algorithms:
        raise MappingFileError(top.file, "encode.algorithm",
                               f"{settings.algorithm!r} is not in algorithms: we would issue "
                               f"codes we refuse to read")
    return settings
