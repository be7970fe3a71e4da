"""EU DCC value sets: the code lists rules read as ``external.valueSets``.

A value-set file is the EU's (``{"valueSetId", "valueSetDate", "valueSetValues": {code:
{"display", "lang", "active", "system", "version"}}}``, as in ehn-dcc-development/
eu-dcc-valuesets and the DCC gateway). Rules receive them "compressed", as the EU's own
``dcc-business-rules-utils`` does: ``{valueSetId: [code, ...]}``. Every code is listed, active
or not, as upstream's compression does: a rule that wants active codes only says so itself.
Files are kept under ``<data dir>/valuesets/<valueSetId>.json``.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import ConfigurationError
from .ruleset import read_json_file

MAX_VALUESET_BYTES = 4 * 1024 * 1024
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ValueSetError(ConfigurationError):
    """A value-set file is not in the EU's format."""

    reason = "invalid_valueset"


def parse_valueset(data, source: str = "") -> tuple[str, list[str]]:
    """``(valueSetId, codes)`` of one value-set document; errors name the source."""
    where = source or "value set"
    if not isinstance(data, dict):
        raise ValueSetError(f"{where}: a value set is a JSON object")
    vs_id = data.get("valueSetId")
    values = data.get("valueSetValues")
    if not isinstance(vs_id, str) or not _ID.match(vs_id):
        raise ValueSetError(f"{where}: valueSetId: required, letters, digits, '.', '_', '-'")
    if not isinstance(values, dict) or not all(isinstance(v, dict) for v in values.values()):
        raise ValueSetError(f"{where}: {vs_id}: valueSetValues: an object of code -> entry")
    return vs_id, sorted(values)


def read_valueset_file(path: Path) -> tuple[str, list[str], dict]:
    data = read_json_file(path, MAX_VALUESET_BYTES, ValueSetError)
    vs_id, codes = parse_valueset(data, str(path))
    return vs_id, codes, data


def find_valueset_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    return sorted(p for p in source.glob("*.json") if not p.name.startswith("."))


def load_valuesets(folder: Path) -> dict[str, list[str]]:
    """Every value set in a folder, compressed; a duplicate id is a configuration error."""
    sets: dict[str, list[str]] = {}
    if not folder.is_dir():
        return sets
    for path in find_valueset_files(folder):
        vs_id, codes, _ = read_valueset_file(path)
        if vs_id in sets:
            raise ValueSetError(f"{path}: value set {vs_id} is defined twice")
        sets[vs_id] = codes
    return sets
