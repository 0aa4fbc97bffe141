"""Key events for typed text, as Playwright's ``keyboard.type`` sends them on the US layout, for DevTools.

``keyboard.type`` presses one key at a time and waits for the page after each event (about 6 ms a
character). The same events, sent back to back (tools.capture.PageCapture.send_all), reach the page in the
same order with the same fields, so pages that listen to keydown, keypress, input or keyup see what they saw.
Characters the layout has no key for (and Enter, Tab) are left to Playwright.

    runs = key_runs("Aurora é")  # [("keys", "Aurora "), ("other", "é")]
    commands = key_events("Aurora ")
"""

from __future__ import annotations

from typing import Any

__all__ = ["key_events", "key_runs"]

_CODES = {
    "`": ("Backquote", 192, "~"),
    "-": ("Minus", 189, "_"),
    "=": ("Equal", 187, "+"),
    "\\": ("Backslash", 220, "|"),
    "[": ("BracketLeft", 219, "{"),
    "]": ("BracketRight", 221, "}"),
    ";": ("Semicolon", 186, ":"),
    "'": ("Quote", 222, '"'),
    ",": ("Comma", 188, "<"),
    ".": ("Period", 190, ">"),
    "/": ("Slash", 191, "?"),
    " ": ("Space", 32, None),
}
_SHIFTED_DIGITS = ")!@#$%^&*("


def _layout() -> dict[str, tuple[str, int]]:
    """Character -> (code, keyCode), for every character with a key of its own on the US layout."""
    keys: dict[str, tuple[str, int]] = {}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        keys[letter] = keys[letter.upper()] = (f"Key{letter.upper()}", ord(letter.upper()))
    for digit in range(10):
        keys[str(digit)] = keys[_SHIFTED_DIGITS[digit]] = (f"Digit{digit}", 48 + digit)
    for char, (code, key_code, shifted) in _CODES.items():
        keys[char] = (code, key_code)
        if shifted is not None:
            keys[shifted] = (code, key_code)
    return keys


LAYOUT = _layout()


def key_runs(text: str) -> list[tuple[str, str]]:
    """``text`` cut into runs: ("keys", characters with a key) and ("other", the rest), in order."""
    runs: list[tuple[str, str]] = []
    for char in text:
        kind = "keys" if char in LAYOUT else "other"
        if runs and runs[-1][0] == kind:
            runs[-1] = (kind, runs[-1][1] + char)
        else:
            runs.append((kind, char))
    return runs


def key_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Input.dispatchKeyEvent commands for ``text`` (every character in LAYOUT): a keyDown carrying the
    character and a keyUp per character, no modifiers held, as Playwright sends them off macOS."""
    commands: list[tuple[str, dict[str, Any]]] = []
    for char in text:
        code, key_code = LAYOUT[char]
        common = {"modifiers": 0, "key": char, "windowsVirtualKeyCode": key_code, "code": code, "location": 0, "isKeypad": False}
        down = {"type": "keyDown", **common, "text": char, "unmodifiedText": char, "autoRepeat": False, "commands": []}
        commands.append(("Input.dispatchKeyEvent", down))
        commands.append(("Input.dispatchKeyEvent", {"type": "keyUp", **common}))
    return commands
