"""Keep secret values out of everything that is written: the last line of defence before a file."""

from __future__ import annotations

from typing import Any

MASK = "●●●●"


class Scrubber:
    """Replaces every secret value found in strings (recursively in dicts and lists) with ``●●●●``.

    >>> Scrubber(["hunter2"]).scrub({"text": "pw is hunter2"})
    {'text': 'pw is ●●●●'}
    """

    def __init__(self, values: list[str]) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._values = sorted({v for v in values if v}, key=len, reverse=True)

    def scrub(self, value: Any) -> Any:
        if not self._values:
            return value
        if isinstance(value, str):
            for secret in self._values:
                if secret in value:
                    value = value.replace(secret, MASK)
            return value
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.scrub(v) for v in value)
        return value
