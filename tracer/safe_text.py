"""Recorded text made safe for the formats it is written in. Labels, reasoning and errors come from pages and models,
so they can hold any character: one that XML cannot hold makes a GraphML file or an SVG unreadable, and a C1
control (U+0080-U+009F, e.g. U+009B, a terminal's CSI) passes through JSON encoders as it is, to a terminal."""

from __future__ import annotations

import re

# XML 1.0 allows neither C0 controls (but tab and line breaks), lone surrogates nor U+FFFE/FFFF; DEL and C1 are
# allowed but are terminal controls.
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
# Every C0 and C1 control and DEL: what a terminal may act on.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# What a person's text (a label's note, a correction's text to type) may not hold: controls other than tab and
# newline, which would move a terminal's cursor or colour a listing, and the bidirectional overrides and isolates,
# which reorder what is shown after them. No person means them.
_PERSON_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# What a JSON encoder writes raw (it escapes C0 only): DEL, C1 and lone surrogates.
_JSON_RAW = re.compile("[\x7f-\x9f\ud800-\udfff]")


def xml_text(text: str) -> str:
    """``text`` with every character XML cannot hold (and DEL, C1) written as ``\\xNN`` / ``\\uNNNN`` text."""
    if not _XML_BAD.search(text):
        return text
    return _XML_BAD.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text)


def json_text(document: str) -> str:
    """A JSON document with DEL, C1 controls and lone surrogates as ``\\uNNNN`` escapes: the same data, and nothing
    a terminal would act on (they can only stand inside strings, where the escape means the same character)."""
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", document)


def no_control(value: str | None) -> str | None:
    """``value`` as it is, or ValueError naming the first control character in it (for validators)."""
    if value is not None and (found := _PERSON_CONTROL.search(value)):
        raise ValueError(f"contains a control character ({found.group()!r}); only tab and newline are allowed")
    return value


def key_names(keys: list[str] | None) -> list[str] | None:
    """``keys`` as they are, or ValueError naming one that cannot be a key's name (for validators)."""
    for key in keys or []:
        if not key or len(key) > 40 or _PERSON_CONTROL.search(key):
            raise ValueError(f"{key[:40]!r} is not a key name (1..40 characters, no control characters)")
    return keys


def controls_as_spaces(text: str) -> str:
    """``text`` with what :func:`no_control` refuses written as spaces (text stored before it was refused)."""
    return _PERSON_CONTROL.sub(" ", text)
