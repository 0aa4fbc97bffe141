"""Keep secret values out of everything that is written or served: the last line of defence before a file.

A secret leaks in more shapes than its plain text: JSON-escaped inside a model's raw output, URL-encoded in
a page URL, HTML-escaped in page markup, ``repr``-escaped in a check's detail, or cut short (an element's
text is truncated to 200 characters, a detail to 300). So the scrubber masks every *form* of each secret and
any run of 8 or more characters taken from one of those forms.

How it stays fast on a 1 MB string: every form is cut once into its 8-character windows (a set). A short
text is checked window by window, only inside runs of characters that occur in some form (a C-level regex
finds them); a long text gets a rolling hash of every window at once (numpy) looked up in a bitmap and then
in the sorted window hashes. Each hit covers 8 characters; the union of hits is what gets masked (a longer
fragment is exactly a chain of overlapping 8-character windows). Linear in the text.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

from pydantic import BaseModel

MASK = "●●●●"
MIN_FRAGMENT = 8  # a run of this many characters of a secret (in any form) is masked

_T = TypeVar("_T")
_HASH_BASE = 0x100000001B3  # FNV prime: odd, so windows hash well with wrap-around uint64 arithmetic
_HASH_MOD = 1 << 64
_NUMPY_FROM = 512  # texts at least this long are scanned with numpy (per-character Python costs more)


# Encodings a page without a declared charset is read (and its forms submitted) in, by browser locale.
_LEGACY_ENCODINGS = ("cp1252", "iso-8859-2", "cp1251", "koi8-r", "gbk", "gb18030", "big5", "shift_jis", "euc-jp", "euc-kr")


def secret_forms(secret: str) -> set[str]:
    """Every encoding in which ``secret`` may show up in recorded or served text (the secret included)."""
    forms = {secret}
    for ensure_ascii in (True, False):
        escaped = json.dumps(secret, ensure_ascii=ensure_ascii)[1:-1]
        forms.add(escaped)
        # JSON embedded in HTML (`<`, `>`, `&` written as \u003c ...), as a viewer page embeds it.
        forms.add(escaped.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))
    url_forms = []
    # A browser submits a form in the page's own encoding: a page that declares none is read as windows-1252 (or
    # the locale's legacy encoding), and a character it cannot hold goes as &#NNNN;, all percent-encoded.
    for encoding in ("utf-8", *_LEGACY_ENCODINGS) if not secret.isascii() else ("utf-8",):
        url_forms += [
            quote(secret, safe="", encoding=encoding, errors="xmlcharrefreplace"),
            quote(secret, encoding=encoding, errors="xmlcharrefreplace"),
            quote_plus(secret, encoding=encoding, errors="xmlcharrefreplace"),
            quote_plus(secret, safe="/", encoding=encoding, errors="xmlcharrefreplace"),
            quote_plus(secret, safe="*", encoding=encoding, errors="xmlcharrefreplace"),
        ]
    url_forms.append(quote(secret, safe="!'()*~"))  # JavaScript's encodeURIComponent (always UTF-8)
    every_byte = "".join(f"%{b:02X}" for b in secret.encode())  # a page may percent-encode every character
    for encoded in (*url_forms, every_byte):
        for form in (encoded, encoded.replace("~", "%7E")):  # Chromium's form encoding writes ~ as %7E
            forms.add(form)
            forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), form))  # some encoders write %2f
    forms.add(html.escape(secret))
    forms.add(html.escape(secret, quote=False))
    forms.add(
        secret.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")  # markupsafe (Jinja2)
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )
    quoted = repr("'\"" + secret)[1:-1][3:]  # repr with both quotes present: ' escaped as \'
    forms.add(quoted)
    forms.add(quoted.replace("\\'", "'"))  # repr of a string without double quotes: ' left alone
    forms.discard("")
    return forms


class Scrubber:
    """Masks every secret, in every form and every long fragment, in strings, containers and pydantic models.

    >>> Scrubber(["hunter2"]).scrub({"text": "pw is hunter2"})
    {'text': 'pw is ●●●●'}

    ``names`` are the secrets' public names (``password``): a fragment match that lies inside one of them
    (``<secret>password</secret>`` when the password is ``password123``) is not a leak and is kept, so
    placeholders survive. A name that contains a whole secret is not protected.
    """

    def __init__(self, values: Iterable[str], *, names: Iterable[str] = ()) -> None:
        secrets = {v for v in values if v}
        forms: set[str] = set()
        for secret in secrets:
            forms |= secret_forms(secret)
        # Forms shorter than a window are matched whole; longer ones through their windows.
        self._short = sorted((f for f in forms if len(f) < MIN_FRAGMENT), key=len, reverse=True)
        self._grams = {f[i : i + MIN_FRAGMENT] for f in forms if len(f) >= MIN_FRAGMENT for i in range(len(f) - MIN_FRAGMENT + 1)}
        alphabet = sorted({c for gram in self._grams for c in gram})
        self._runs = re.compile("[" + "".join(_class_char(c) for c in alphabet) + "]{%d,}" % MIN_FRAGMENT) if alphabet else None
        self._gram_table: Any = None  # (sorted hashes, bitmap, bits) for numpy, built on first use
        self._names = sorted({n for n in names if n and not any(f in n for f in forms)}, key=len, reverse=True)
        self._active = bool(forms)
        # For text read off pixels (OCR), where case and spaces are the reader's guess: the secrets themselves,
        # folded and without spaces, whole when short and through their windows when long.
        folded = {"".join(v.split()).casefold() for v in secrets} - {""}
        self._folded_short = {f for f in folded if len(f) < MIN_FRAGMENT}
        self._folded_grams = {f[i : i + MIN_FRAGMENT] for f in folded for i in range(len(f) - MIN_FRAGMENT + 1)}

    @classmethod
    def from_secrets(cls, secrets: Mapping[str, str]) -> "Scrubber":
        """A scrubber for a task's ``{name: value}`` secrets."""
        return cls(secrets.values(), names=secrets.keys())

    def __bool__(self) -> bool:
        return self._active

    def shows_in_any_case(self, text: str) -> bool:
        """Whether ``text`` holds a secret, or a fragment of one as long as a masked fragment, in any case and
        spacing (``ZEBRA-SECRET-991``, ``Zebra-S ecret-991``): for text read off a screenshot, where OCR guesses
        case and spaces, and a page may draw the secret otherwise than it was typed."""
        if not self._active:
            return False
        squeezed = "".join(text.split()).casefold()
        if any(short in squeezed for short in self._folded_short):
            return True
        return any(squeezed[i : i + MIN_FRAGMENT] in self._folded_grams for i in range(len(squeezed) - MIN_FRAGMENT + 1))

    # -- walking values -------------------------------------------------------------------------------
    def scrub(self, value: _T) -> _T:
        """A copy of ``value`` with every secret masked; unchanged parts are returned as they are."""
        if not self._active:
            return value
        masked: _T = self._walk(value)
        return masked

    def _walk(self, value: Any) -> Any:
        if isinstance(value, Enum):  # a status or kind: fixed by the code, never a secret (and must keep its type)
            return value
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, BaseModel):
            return self._walk_model(value)
        if isinstance(value, dict):
            changed = False
            out = {}
            for key, item in value.items():
                new_key, new_item = self._walk(key), self._walk(item)
                changed = changed or new_key is not key or new_item is not item
                out[new_key] = new_item
            return out if changed else value
        if isinstance(value, (list, tuple, set, frozenset)):
            items = [self._walk(v) for v in value]
            if all(a is b for a, b in zip(items, value, strict=True)):
                return value
            if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
                return type(value)(*items)
            return type(value)(items)
        return value  # numbers, datetimes, enums of numbers, None: nothing to hide

    def _walk_model(self, model: BaseModel) -> BaseModel:
        # Field by field (not through model_dump), so the copy keeps its type and nested models theirs.
        changed = {}
        for name in type(model).model_fields:
            old = getattr(model, name)
            new = self._walk(old)
            if new is not old:
                changed[name] = new
        extra = model.model_extra or {}
        for name, old in extra.items():
            new = self._walk(old)
            if new is not old:
                changed[name] = new
        return model.model_copy(update=changed) if changed else model

    # -- text ---------------------------------------------------------------------------------------
    def scrub_text(self, text: str) -> str:
        """``text`` with every secret form and every 8+ character fragment of one replaced by ``●●●●``."""
        if not self._active or not text:
            return text
        spans: list[tuple[int, int]] = []
        for form in self._short:
            start = text.find(form)
            while start != -1:
                spans.append((start, start + len(form)))
                start = text.find(form, start + len(form))
        if len(text) >= _NUMPY_FROM:
            spans.extend(self._window_hits_numpy(text))
        elif self._runs is not None and len(text) >= MIN_FRAGMENT:
            grams, width = self._grams, MIN_FRAGMENT
            for run in self._runs.finditer(text):
                spans.extend((i, i + width) for i in range(run.start(), run.end() - width + 1) if text[i : i + width] in grams)
        if not spans:
            return text
        spans = self._unprotected(text, _merge(spans))
        if not spans:
            return text
        parts, last = [], 0
        for start, end in spans:
            parts += [text[last:start], MASK]
            last = end
        parts.append(text[last:])
        return "".join(parts)

    def _window_hits_numpy(self, text: str) -> list[tuple[int, int]]:
        """The merged spans of window hits in ``text``, computed over whole arrays (no per-character Python)."""
        import numpy as np

        if not self._grams:
            return []
        if self._gram_table is None:
            known = np.array(sorted({_hash(g) for g in self._grams}), dtype=np.uint64)
            bits = min(24, max(16, (len(known) * 64).bit_length()))  # a false-positive rate under 1/64
            bitmap = np.zeros(1 << bits, dtype=bool)
            bitmap[_bucket(known, bits)] = True
            self._gram_table = (known, bitmap, bits)
        table, bitmap, bits = self._gram_table
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.uint64)
        count = len(codes) - MIN_FRAGMENT + 1
        hashes = np.zeros(count, dtype=np.uint64)
        base = np.uint64(_HASH_BASE)
        for k in range(MIN_FRAGMENT):  # uint64 arithmetic wraps around: the same value as _hash's mod 2**64
            np.multiply(hashes, base, out=hashes)
            np.add(hashes, codes[k : k + count], out=hashes)
        maybe = np.nonzero(bitmap[_bucket(hashes, bits)])[0]  # cheap filter, then the exact 64-bit hash
        slots = np.minimum(np.searchsorted(table, hashes[maybe]), len(table) - 1)
        hits = maybe[table[slots] == hashes[maybe]]
        if len(hits) == 0:
            return []
        # Windows closer than their width overlap: one span per group.
        breaks = np.nonzero(np.diff(hits) > MIN_FRAGMENT)[0]
        starts = hits[np.concatenate(([0], breaks + 1))]
        ends = hits[np.concatenate((breaks, [len(hits) - 1]))] + MIN_FRAGMENT
        return list(zip(starts.tolist(), ends.tolist(), strict=True))

    def _unprotected(self, text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Drop the spans that lie inside an occurrence of a secret's public name."""
        if not self._names:
            return spans
        kept = []
        for start, end in spans:
            inside = any(
                len(name) >= end - start and text.find(name, max(0, end - len(name)), start + len(name)) != -1
                for name in self._names
            )
            if not inside:
                kept.append((start, end))
        return kept


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    spans.sort()
    merged = [spans[0]]
    for start, end in spans[1:]:
        last_start, last_end = merged[-1]
        if start <= last_end:
            merged[-1] = (last_start, max(last_end, end))
        else:
            merged.append((start, end))
    return merged


def _hash(gram: str) -> int:
    value = 0
    for ch in gram:
        value = (value * _HASH_BASE + ord(ch)) % _HASH_MOD
    return value


def _bucket(hashes: Any, bits: int) -> Any:
    # Multiply by an odd constant and keep the top bits: every input bit moves the bucket.
    import numpy as np

    return (hashes * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits)


def _class_char(ch: str) -> str:
    # Inside [...] only these are special; escaping them keeps the class literal.
    return "\\" + ch if ch in "\\]^-[" else ch


def with_placeholders(text: str | None, secrets: Mapping[str, str]) -> str | None:
    """``text`` with each secret's value written as ``<secret>name</secret>``, the form the model types it in (a
    person's correction or note keeps its meaning; the value is gone), longest values first. A value in another
    case is replaced too: ``XQ7-TULIP-4821`` gives the password away as well as ``Xq7-tulip-4821`` does."""
    if text is None:
        return None
    for name, value in sorted(secrets.items(), key=lambda kv: -len(kv[1])):
        if value:
            # a plain replacement string would read backslashes in the name as group references: escape them
            placeholder = f"<secret>{name}</secret>".replace("\\", "\\\\")
            text = re.sub(re.escape(value), placeholder, text, flags=re.IGNORECASE)
    return text
