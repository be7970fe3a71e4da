"""JSON text made once and spliced into answers, instead of encoding the same values per request.

A verify answer under a checkpoint mode carries one entry per rule (id, type, result,
description, ...), and those entries are the same on every scan that meets the same rules: their
JSON text can be kept with them. An :class:`EncodedList` is a plain list (code that reads the
answer sees the entries) that also carries the exact text the app's encoder gives for it; the
app's :class:`JSONProvider` puts that text into a response in place of encoding the list again.

Byte-identical by construction: the text is what :data:`ENCODING`'s options give, and it is used
only when the response is encoded with those same options (the app's compact form:
``ensure_ascii`` off, keys unsorted, separators ``,`` and ``:``), and only for values of a
top-level object, whose keys are strings. Anything else (debug mode's indented form, another
provider setting) encodes the list as the list it is.
"""
from __future__ import annotations

import json
from json.encoder import encode_basestring

from flask.json.provider import DefaultJSONProvider

#: The options an :class:`EncodedList`'s text is made with: the app's compact response form.
ENCODING = {"ensure_ascii": False, "sort_keys": False, "separators": (",", ":")}

_encode = json.JSONEncoder(**ENCODING).encode


def encode(value) -> str:
    """``value`` as JSON text in :data:`ENCODING`'s form (for the parts of an EncodedList)."""
    return _encode(value)


class EncodedList(list):
    """A list with its JSON text (``json``), in :data:`ENCODING`'s form.

    The text must be that of the items as they are: make one from items that no longer change
    (:meth:`of` joins the items' own texts, each made by :func:`encode`).
    """

    __slots__ = ("json",)

    def __init__(self, items, text: str):
        super().__init__(items)
        self.json = text

    @classmethod
    def of(cls, items: list, texts: list[str]) -> "EncodedList":
        """The list of ``items`` whose texts are ``texts`` (one each, same order)."""
        return cls(items, "[" + ",".join(texts) + "]")


class SharedDict(dict):
    """A dict kept and shared by many answers (a rule's entry): read-only, so that no answer
    can change what the others show. ``dict(...)`` or ``.copy()`` gives one to change."""

    __slots__ = ()

    def _refuse(self, *args, **kwargs):
        raise TypeError("a shared entry is read-only: change a copy of it")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self):  # a copy (copy.copy, pickle) is an ordinary dict
        return dict, (dict(self),)


class JSONProvider(DefaultJSONProvider):
    """Flask's provider, splicing in the text of an answer's :class:`EncodedList` values."""

    def dumps(self, obj, **kwargs) -> str:
        if type(obj) is dict:
            for value in obj.values():
                if type(value) is EncodedList:
                    if self._spliceable(kwargs):
                        return self._spliced(obj, kwargs)
                    break
        return super().dumps(obj, **kwargs)

    def _spliceable(self, kwargs) -> bool:
        """Whether this encoding is :data:`ENCODING`'s (nothing else asked in ``kwargs``)."""
        return (kwargs.get("separators") == ENCODING["separators"]
                and set(kwargs) <= {"separators"}
                and self.ensure_ascii is False and self.sort_keys is False)

    def _spliced(self, obj: dict, kwargs) -> str:
        """``obj`` encoded in runs of ordinary items, with each EncodedList's text between."""
        encoder = self._encoder
        if encoder is None or encoder.default is not self.default:
            # what super().dumps(..., **kwargs) makes per call, made once
            encoder = self._encoder = json.JSONEncoder(default=self.default, **ENCODING)
        parts: list[str] = []
        run: dict = {}
        for key, value in obj.items():
            if type(value) is EncodedList and type(key) is str:
                if run:
                    parts.append(encoder.encode(run)[1:-1])
                    run = {}
                parts.append(f"{encode_basestring(key)}:{value.json}")
            else:
                run[key] = value
        if run:
            parts.append(encoder.encode(run)[1:-1])
        return "{" + ",".join(parts) + "}"

    _encoder: json.JSONEncoder | None = None
