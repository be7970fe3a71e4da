"""The canonical record in the DCC payload shape, field by field (rules/projection.py)."""
from __future__ import annotations

from healthcode.record import Record
from healthcode.rules.projection import project


def record(**evidence) -> Record:
    return Record.from_dict({
        "subject": {"family_name": "Musterfrau-Gößinger", "given_name": "Gabriele",
                    "birth_date": "1998-02"},
        "evidence": evidence,
        "provenance": {"scheme": "eu-dcc", "issuer": "AT", "source_id": "URN:UVCI:01:AT:X"}})


def test_an_eu_dcc_vaccination_comes_back_as_it_was():
    (candidate,) = project(record(vaccinations=[{
        "product": "EU/1/20/1528", "dose_number": 2, "series_doses": 2,
        "administered_on": "2021-06-01", "vaccine_type": "1119349007",
        "manufacturer": "ORG-100030215", "country": "AT", "code": "URN:UVCI:01:AT:X"}]))
    assert candidate.certificate_type == "Vaccination"
    assert candidate.payload == {
        "ver": "1.3.0", "dob": "1998-02",
        "nam": {"fn": "Musterfrau-Gößinger", "gn": "Gabriele", "fnt": "MUSTERFRAU<GOESSINGER",
                "gnt": "GABRIELE"},
        "v": [{"tg": "840539006", "vp": "1119349007", "mp": "EU/1/20/1528",
               "ma": "ORG-100030215", "dn": 2, "sd": 2, "dt": "2021-06-01", "co": "AT",
               "is": "AT", "ci": "URN:UVCI:01:AT:X"}]}
    assert candidate.unknown == frozenset()


def test_cvx_codes_become_eu_products():
    (candidate,) = project(record(vaccinations=[
        {"product": "http://hl7.org/fhir/sid/cvx#208", "dose_number": 1,
         "administered_on": "2021-01-01"},
        {"product": "http://hl7.org/fhir/sid/cvx#212", "dose_number": 1,
         "administered_on": "2021-05-01"}]))
    entry = candidate.payload["v"][0]  # the latest dose, as a DCC holds
    assert (entry["mp"], entry["ma"], entry["vp"], entry["dt"]) == (
        "EU/1/20/1525", "ORG-100001417", "J07BX03", "2021-05-01")
    assert {"v.0.sd", "v.0.co", "v.0.ci"} <= candidate.unknown


def test_an_unknown_cvx_code_leaves_the_product_unknown():
    (candidate,) = project(record(vaccinations=[
        {"product": "http://hl7.org/fhir/sid/cvx#999", "dose_number": 1,
         "administered_on": "2021-01-01"}]))
    assert "mp" not in candidate.payload["v"][0]
    assert {"v.0.mp", "v.0.ma", "v.0.vp"} <= candidate.unknown


def test_test_types_and_results_take_the_eu_codes():
    candidates = project(record(tests=[
        {"type": "rat", "result": "negative", "sampled_at": "2021-06-01T08:00:00Z",
         "manufacturer": "1232", "country": "AT", "centre": "Wien"},
        {"type": "pcr", "result": "positive", "sampled_at": "2021-05-01T08:00:00Z"}]))
    (candidate,) = candidates
    entry = candidate.payload["t"][0]
    assert (entry["tt"], entry["tr"], entry["ma"], entry["sc"], entry["tc"]) == (
        "LP217198-3", "260415000", "1232", "2021-06-01T08:00:00Z", "Wien")
    antibody = project(record(tests=[{"type": "antibody", "result": "inconclusive",
                                      "sampled_at": "2021-06-01T08:00:00Z"}]))[0]
    assert {"t.0.tt", "t.0.tr"} <= antibody.unknown


def test_one_candidate_per_kind_of_evidence():
    candidates = project(record(
        vaccinations=[{"product": "EU/1/20/1528", "dose_number": 1,
                       "administered_on": "2021-01-01"}],
        tests=[{"type": "pcr", "result": "negative", "sampled_at": "2021-06-01T08:00:00Z"}],
        recoveries=[{"first_positive_on": "2021-03-01", "valid_from": "2021-03-12",
                     "valid_until": "2021-09-01"}]))
    assert [c.certificate_type for c in candidates] == ["Vaccination", "Test", "Recovery"]
    assert [sorted(set(c.payload) - {"ver", "nam", "dob"}) for c in candidates] == [
        ["v"], ["t"], ["r"]]
    assert candidates[2].payload["r"][0] == {"tg": "840539006", "fr": "2021-03-01",
                                             "df": "2021-03-12", "du": "2021-09-01",
                                             "is": "AT"}


def test_a_name_without_parts_and_no_evidence():
    bare = Record.from_dict({"subject": {"name": "陳大文"}})
    (candidate,) = project(bare)
    assert candidate.certificate_type is None
    assert candidate.payload["nam"] == {"fn": "陳大文"}
    assert {"nam.gn", "nam.fnt", "dob", "v", "t", "r"} <= candidate.unknown
