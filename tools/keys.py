"""Qwen3-VL key names (xdotool / pyautogui style) mapped to Playwright's key names."""

from __future__ import annotations

from tools.actions import ActionError

_PLAYWRIGHT_KEYS = {
    "ctrl": "Control", "control": "Control", "alt": "Alt", "shift": "Shift", "meta": "Meta", "cmd": "Meta",
    "command": "Meta", "super": "Meta", "win": "Meta",
    "enter": "Enter", "return": "Enter", "esc": "Escape", "escape": "Escape", "tab": "Tab",
    "backspace": "Backspace", "delete": "Delete", "del": "Delete", "insert": "Insert", "space": "Space",
    "up": "ArrowUp", "down": "ArrowDown", "left": "ArrowLeft", "right": "ArrowRight",
    "arrowup": "ArrowUp", "arrowdown": "ArrowDown", "arrowleft": "ArrowLeft", "arrowright": "ArrowRight",
    "home": "Home", "end": "End", "pageup": "PageUp", "pagedown": "PageDown", "page_up": "PageUp",
    "page_down": "PageDown", "capslock": "CapsLock",
    **{f"f{i}": f"F{i}" for i in range(1, 13)},
}


def playwright_chord(keys: list[str]) -> str:
    """``["ctrl", "a"]`` -> ``"Control+a"``; raises :class:`ActionError` for an unknown key name."""
    parts: list[str] = []
    for raw in keys:
        # Models sometimes send one combined string ("ctrl+a") instead of a list.
        for key in raw.split("+") if len(raw) > 1 else [raw]:
            key = key.strip()
            mapped = _PLAYWRIGHT_KEYS.get(key.lower())
            if mapped:
                parts.append(mapped)
            elif len(key) == 1:
                parts.append(key)
            else:
                raise ActionError(f"unknown key name {key!r}; use names like ctrl, alt, shift, enter, esc, tab, a")
    return "+".join(parts)
