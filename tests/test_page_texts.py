"""The health authority's words on the resident page: defaults for every reason in every
language, overrides from page-texts.toml, and a bad file stopping start-up."""
import pytest

from healthcode import create_app
from healthcode.errors import ConfigurationError
from healthcode.page_texts import REASON_ADVICE, PageTexts
from healthcode.record import STATUS_REASONS
from tests.views.test_sessions import sign_in


def test_every_reason_has_default_words():
    assert set(REASON_ADVICE) == set(STATUS_REASONS)


def test_the_first_known_reason_explains_the_status():
    advice = PageTexts().advice(["close_contact", "symptoms"], "en")
    assert advice.reason == "close_contact"
    assert "close contact" in advice.why and "PCR" in advice.next


def write(tmp_path, text: str):
    path = tmp_path / "page-texts.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_an_authority_overrides_words_per_reason_and_language(tmp_path):
    texts = PageTexts.load(write(tmp_path, """
[reasons.close_contact.pt]
next = "Ligue para a linha de saúde 2800 0000."
[signin_help.en]
text = "Ask at any health centre."
contact = "Hotline 2800 0000"
"""))
    advice = texts.advice(["close_contact"], "pt")
    assert advice.next == "Ligue para a linha de saúde 2800 0000."
    assert advice.why  # not overridden: the default, still there
    assert texts.advice(["close_contact"], "en").next != advice.next
    assert texts.help("en") == {"text": "Ask at any health centre.", "contact": "Hotline 2800 0000"}
    assert texts.help("pt")["contact"] is None


@pytest.mark.parametrize("text, words", [
    ("[reasons.fever.en]\nwhy = 'x'\n", "unknown reason code 'fever'"),
    ("[reasons.close_contact.fr]\nwhy = 'x'\n", "unknown language"),
    ("[reasons.close_contact.en]\nwhen = 'x'\n", "unknown field 'when'"),
    ("[reasons.close_contact.en]\nwhy = ''\n", "non-empty string"),
    ("[reasons.close_contact.en]\nwhy = 3\n", "non-empty string"),
    ("[colours]\n", "unknown section 'colours'"),
    ("[signin_help.en]\ntext = '" + "x" * 501 + "'\n", "at most 500"),
    ("this is = = not toml", "not valid TOML"),
])
def test_a_bad_file_stops_start_up_naming_it(tmp_path, redis_server, text, words):
    write(tmp_path, text)
    with pytest.raises(ConfigurationError, match=words) as raised:
        create_app({"TESTING": True, "REDIS_URL": redis_server.url, "DATA_DIR": str(tmp_path),
                    "SUBJECT_SECRET": "test-subject-secret-0123456789",
                    "SECRET_KEY": "test-secret-key-0123456789"})
    assert "page-texts.toml" in str(raised.value)


def test_the_resident_page_shows_the_authoritys_words(tmp_path, redis_server, redis_client):
    write(tmp_path, "[reasons.positive_test.en]\nnext = 'Call 2800 0000 now.'\n")
    app = create_app({"TESTING": True, "REDIS_URL": redis_server.url, "DATA_DIR": str(tmp_path),
                      "SUBJECT_SECRET": "test-subject-secret-0123456789",
                      "SECRET_KEY": "test-secret-key-0123456789",
                      "CREDENTIAL_CACHE_SECONDS": 0})
    client = app.test_client()
    store = app.extensions["healthcode.store"]
    _, authority = store.create_credential("authority")
    body = {"name": "Chan Siu Ming", "document": {"type": "id_card", "number": "1234567(8)",
                                                  "region": "MO"},
            "status": "red", "reasons": ["positive_test"]}
    sid = client.post("/api/v1/residents", json=body,
                      headers={"Authorization": f"Bearer {authority}"}).get_json()["id"]
    _, resident = store.create_credential("resident", subject=sid)
    sign_in(client, resident)
    html = client.get("/me?lang=en").get_data(as_text=True)
    assert "Call 2800 0000 now." in html and "positive test result" in html
    advice = client.get("/me/code").get_json()["advice"]
    assert advice == {"reason": "positive_test", "why": "You have a positive test result.",
                      "next": "Call 2800 0000 now."}
