"""Kept JSON texts spliced into answers give the bytes encoding the answer whole would give."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from flask import Flask

from healthcode import jsontext
from healthcode.jsontext import EncodedList

ENTRIES = [{"id": "VR-DE-0001", "type": "Acceptance", "result": "passed",
            "description": "Die Impfserie muss vollständig sein «», 漢字 \u2028 \"quoted\" \\",
            "version": "1.0.0", "country": "DE"},
           {"id": "GR-EU-0000", "type": "Acceptance", "result": "open",
            "description": "Exactly one type of event", "version": "1.0.0",
            "country": "EU", "note": "the code's scheme does not say v.0.mp"}]


def encoded(entries=ENTRIES) -> EncodedList:
    return EncodedList.of([dict(e) for e in entries], [jsontext.encode(e) for e in entries])


@pytest.fixture
def app():
    app = Flask(__name__)
    app.json = jsontext.JSONProvider(app)
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    return app


def plain(app, answer, **options) -> str:
    """What Flask's own provider gives for ``answer``, the lists as plain lists."""
    whole = {k: list(v) if isinstance(v, EncodedList) else v for k, v in answer.items()}
    return json.dumps(whole, default=app.json.default, ensure_ascii=app.json.ensure_ascii,
                      sort_keys=app.json.sort_keys, **options)


@pytest.mark.parametrize("answer", [
    {"valid": True, "subject": {"masked_name": "G. M•••"}, "mode": "entry", "rules": encoded(),
     "status": "green", "warnings": [{"code": "x", "message": "ü"}]},
    {"rules": encoded()},                                   # the list first, nothing after
    {"valid": False, "rules": encoded([])},                 # an empty list
    {"a": 1, "rules": encoded(), "more": encoded(ENTRIES[:1]), "at": datetime(
        2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)},         # two lists; the app's default
    {"rules": encoded(), "nested": {"rules": encoded()}},   # a nested one: encoded as a list
])
def test_a_response_is_byte_identical_to_encoding_the_answer_whole(app, answer):
    with app.app_context():
        body = app.json.response(answer).get_data(as_text=True)
    assert body == plain(app, answer, separators=(",", ":")) + "\n"
    assert json.loads(body)["rules"] == [dict(e) for e in answer["rules"]]


def test_the_kept_text_is_used_where_the_encoding_is_the_compact_one(app):
    answer = {"valid": True, "rules": EncodedList(ENTRIES, '["kept"]')}
    with app.app_context():
        assert app.json.response(answer).get_data(as_text=True) == \
            '{"valid":true,"rules":["kept"]}\n'


@pytest.mark.parametrize("setting", ["debug", "ensure_ascii", "sort_keys"])
def test_another_encoding_encodes_the_list_as_it_is(app, setting):
    """Indented (debug), ASCII-only or sorted: the kept text is not that form, so not used."""
    answer = {"valid": True, "rules": EncodedList(ENTRIES, '["kept"]')}
    options = {"separators": (",", ":")}
    if setting == "debug":
        app.debug = True
        options = {"indent": 2}
    else:
        setattr(app.json, setting, True)
    with app.app_context():
        body = app.json.response(answer).get_data(as_text=True)
    assert "kept" not in body
    assert body == plain(app, answer, **options) + "\n"


def test_a_shared_entry_is_read_only_and_its_copies_are_not():
    entry = jsontext.SharedDict(id="VR-DE-0001", result="passed")
    for change in (lambda e: e.__setitem__("note", "x"), lambda e: e.update(note="x"),
                   lambda e: e.setdefault("note", "x"), lambda e: e.pop("id"),
                   lambda e: e.popitem(), lambda e: e.clear(), lambda e: e.__delitem__("id")):
        with pytest.raises(TypeError):
            change(entry)
    with pytest.raises(TypeError):
        entry |= {"note": "x"}
    assert entry == {"id": "VR-DE-0001", "result": "passed"}
    for copy_ in (dict(entry), entry.copy(), __import__("copy").deepcopy(entry)):
        assert type(copy_) is dict and copy_ == entry
        copy_["note"] = "x"
    assert jsontext.encode(entry) == '{"id":"VR-DE-0001","result":"passed"}'
