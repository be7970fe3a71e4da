"""The canonical record: validated on construction, immutable, stable JSON form."""
import dataclasses

import pytest

from healthcode.errors import InvalidField
from healthcode.record import Record, Subject, mask_name, parse_partial_date

FULL = {
    "subject": {"name": "陳大文", "name_latin": "CHAN TAI MAN", "birth_date": "1980-01",
                "document": {"type": "Travel_Permit", "number": " H1234567 ", "region": "mo"}},
    "status": "yellow", "reasons": ["close_contact"],
    "evidence": {
        "tests": [{"type": "pcr", "result": "negative", "sampled_at": "2026-11-27T16:00:00+08:00"}],
        "vaccinations": [{"product": "EU/1/20/1528", "dose_number": 2, "series_doses": 2,
                          "administered_on": "2021-06-01"}],
        "recoveries": [{"first_positive_on": "2022-01-03", "valid_until": "2022-07-01"}]},
    "provenance": {"scheme": "native", "issuer": "HC", "issued_at": 1764300000},
}


def test_round_trips_through_its_json_form():
    record = Record.from_dict(FULL)
    assert Record.from_dict(record.to_dict()) == record


def test_normalises_what_it_is_given():
    data = Record.from_dict(FULL).to_dict()
    assert data["subject"]["document"] == {"type": "travel_permit", "number": "H1234567",
                                           "region": "MO"}
    assert data["evidence"]["tests"][0]["sampled_at"] == "2026-11-27T08:00:00Z"
    assert data["provenance"]["issued_at"] == "2025-11-28T03:20:00Z"
    assert data["subject"]["masked_name"] == "陳*文"


def test_is_immutable():
    record = Record.from_dict(FULL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.status = "green"


@pytest.mark.parametrize("change, field", [
    ({"status": "blue"}, "status"),
    ({"subject": {"name": "x", "birth_date": "1980-13"}}, "subject.birth_date"),
    ({"subject": {"name": "x", "birth_date": "80-01-01"}}, "subject.birth_date"),
    ({"subject": {"name": "x", "nickname": "y"}}, "subject.nickname"),
    ({"subject": {"name": "x", "document": {"type": "passport", "number": ""}}},
     "subject.document.region"),
    ({"evidence": {"tests": [{"type": "pcr", "result": "maybe",
                              "sampled_at": "2026-01-01T00:00:00Z"}]}}, "evidence.tests.result"),
    ({"evidence": {"tests": [{"type": "pcr", "result": "negative", "sampled_at": "yesterday"}]}},
     "evidence.tests.sampled_at"),
    ({"evidence": {"vaccinations": [{"product": "X", "administered_on": "2021-01-01"}]}},
     "evidence.vaccinations.dose_number"),
    ({"evidence": {"tests": [{"type": "pcr", "result": "negative", "sampled_at": 2**70}]}},
     "evidence.tests.sampled_at"),
    ({"evidence": {"tests": [{"type": "pcr", "result": "negative",
                              "sampled_at": float("inf")}]}}, "evidence.tests.sampled_at"),
])
def test_rejects_invalid_data_naming_the_field(change, field):
    with pytest.raises(InvalidField) as info:
        Record.from_dict({**FULL, **change})
    assert info.value.detail["field"] == field


@pytest.mark.parametrize("name, masked", [
    ("陳大文", "陳*文"), ("李明", "李*"), ("Chan Tai Man", "C**n T*i M*n"), ("A", "A"),
    ("歐陽娜娜", "歐**娜"), ("김민준", "김*준"),
    ("Musterfrau-Gößinger", "M********u-G******r"), ("O'Neill Seán", "O'N***l S**n"),
    ("MUSTERFRAU<GOESSINGER", "M********U G********R"), ("  Jane   Sue ", "J**e S*e"),
])
def test_masks_names_keeping_first_and_last_characters(name, masked):
    assert mask_name(name) == masked


@pytest.mark.parametrize("parts, name", [
    ({"family_name": "陳", "given_name": "大文"}, "陳大文"),           # CJK: family first, no space
    ({"family_name": "山田", "given_name": "太郎"}, "山田太郎"),
    ({"family_name": "김", "given_name": "민준"}, "김민준"),
    ({"family_name": "Musterfrau", "given_name": "Gabriele"}, "Gabriele Musterfrau"),
    ({"family_name": "Παπαδόπουλος", "given_name": "Γιώργος"}, "Γιώργος Παπαδόπουλος"),
    ({"family_name": "Chan"}, "Chan"),
])
def test_a_name_from_its_parts_follows_its_script(parts, name):
    assert Subject(**parts).name == name


def test_the_masked_name_comes_from_the_name_as_issued_else_its_transliteration():
    both = Subject(family_name="陳", given_name="大文", family_name_latin="CHAN",
                   given_name_latin="TAI<MAN")
    assert (both.name, both.name_latin, both.masked_name) == ("陳大文", "TAI MAN CHAN", "陳*文")
    assert both.given_name_latin == "TAI<MAN"  # kept as issued
    latin_only = Subject(family_name_latin="MUSTERFRAU<GOESSINGER", given_name_latin="GABRIELE")
    assert latin_only.name is None
    assert latin_only.masked_name == "G******E M********U G********R"


@pytest.mark.parametrize("text", ["1964", "1964-08", "1964-08-31"])
def test_accepts_partial_birth_dates(text):
    assert parse_partial_date(text, "dob") == text


def test_a_subject_may_be_nameless():
    """An SHC lab-result card carries no Patient: such a record is still a record."""
    assert Subject().masked_name is None


def test_a_check_digit_in_brackets_is_the_same_document():
    """Hong Kong and Macau identity cards print the check digit in brackets; people type it
    with or without them: both forms must give the same subject id."""
    from healthcode.record import Document

    printed = Document(type="id_card", number="1234567(8)", region="MO")
    typed = Document(type="id_card", number="12345678", region="MO")
    assert printed.normalised() == typed.normalised() == "id_card|MO|12345678"
