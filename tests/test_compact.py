"""The compact stored form: CBOR with known field names and common values as small numbers,
read back exactly; names and values it does not know still round-trip."""
import json

from healthcode import compact

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
