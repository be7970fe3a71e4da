"""The compact stored form: CBOR with known field names and common values as small numbers,
read back exactly; names and values it does not know still round-trip."""
import functools
import json
import random

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.capacity import resident
from healthcode import compact
from healthcode.residents import prepare_enrollment

RECORD = {"record": {"subject": {"name": "陳大文", "birth_date": "1980-01-02",
                                 "document": {"type": "travel_permit", "number": "H1****67",
                                              "region": "MO"}},
                     "status": "red", "reasons": ["close_contact"],
                     "evidence": {"vaccinations": [{"product": "EU/1/20/1528", "dose_number": 2,
                                                    "manufacturer": "ORG-100030215",
                                                    "administered_on": "2021-08-01"}]}},
          "created_at": 1764300000, "actor": "authority:0123456789ab"}


def test_a_record_reads_back_exactly():
    assert compact.loads(compact.dumps(RECORD)) == RECORD


def test_it_is_much_smaller_than_json():
    assert len(compact.dumps(RECORD)) < 0.5 * len(json.dumps(RECORD, ensure_ascii=False).encode())


def test_unknown_fields_and_values_survive():
    data = {"a_field_added_later": {"status": "a colour added later", "list": ["green", 3]}}
    assert compact.loads(compact.dumps(data)) == data


def test_the_tables_only_grow():
    # stored records name fields and values by position: these must never move
    assert compact.FIELDS[:3] == ("subject", "name", "family_name")
    assert compact.VALUES[:3] == ("green", "yellow", "red")
    assert len(set(compact.FIELDS)) == len(compact.FIELDS)
    assert len(set(compact.VALUES)) == len(compact.VALUES)


# The encoder writes the bytes itself; cbor2 of the shrunk form is the definition it must
# match byte for byte (stored records stay readable by any CBOR reader and by older code).
_names = st.sampled_from(compact.FIELDS + compact.VALUES + ("a_field_added_later", "é", ""))
_leaves = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
           | _names | st.text())
_json_like = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=5)
                          | st.tuples(inner, inner)
                          | st.dictionaries(_names | st.text(max_size=3), inner, max_size=6),
                          max_leaves=20)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_names, _json_like, max_size=6))
def test_the_bytes_are_cbor2s_of_the_shrunk_form(data):
    assert compact.dumps(data) == cbor2.dumps(compact._shrink(data))


def test_so_are_those_of_realistic_records():
    rng = random.Random(1)
    for i in range(300):
        body = resident(i, rng)
        record = prepare_enrollment(body, b"test-secret").record
        data = {"record": record, "created_at": 1764300000 + i, "actor": "operator:import"}
        assert compact.dumps(data) == cbor2.dumps(compact._shrink(data))
        assert compact.loads(compact.dumps(data)) == data


def test_what_it_does_not_encode_itself_goes_to_cbor2():
    class Colour(str):
        pass

    for data in ({"status": Colour("green")}, {"at": 2**64}, {"x": 0.5}, {1: "key"},
                 {"deep": functools.reduce(lambda inner, _: [inner], range(100), [])}):
        assert compact.dumps(data) == cbor2.dumps(compact._shrink(data))
    with pytest.raises(UnicodeEncodeError):  # as cbor2 refuses it
        compact.dumps({"name": "\ud800"})
