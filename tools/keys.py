"""Qwen3-VL key names (xdotool / pyautogui style) mapped to Playwright's and pyautogui's key names."""

from __future__ import annotations

from tools.actions import ActionError

_PLAYWRIGHT_KEYS = {
    "ctrl": "Control",
    "control": "Control",
    "alt": "Alt",
    "shift": "Shift",
    "meta": "Meta",
    "cmd": "Meta",
    "command": "Meta",
    "super": "Meta",
    "win": "Meta",
    "enter": "Enter",
    "return": "Enter",
    "esc": "Escape",
    "escape": "Escape",
    "tab": "Tab",
    "backspace": "Backspace",
    "delete": "Delete",
    "del": "Delete",
    "insert": "Insert",
    "space": "Space",
    "up": "ArrowUp",
    "down": "ArrowDown",
    "left": "ArrowLeft",
    "right": "ArrowRight",
    "arrowup": "ArrowUp",
    "arrowdown": "ArrowDown",
    "arrowleft": "ArrowLeft",
    "arrowright": "ArrowRight",
    "home": "Home",
    "end": "End",
    "pageup": "PageUp",
    "pagedown": "PageDown",
    "page_up": "PageUp",
    "page_down": "PageDown",
    "capslock": "CapsLock",
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


_PYAUTOGUI_KEYS = {
    "ctrl": "ctrl",
    "control": "ctrl",
    "alt": "alt",
    "shift": "shift",
    "meta": "winleft",
    "cmd": "winleft",
    "command": "winleft",
    "super": "winleft",
    "win": "winleft",
    "enter": "enter",
    "return": "enter",
    "esc": "esc",
    "escape": "esc",
    "tab": "tab",
    "backspace": "backspace",
    "delete": "delete",
    "del": "delete",
    "insert": "insert",
    "space": "space",
    "up": "up",
    "down": "down",
    "left": "left",
    "right": "right",
    "arrowup": "up",
    "arrowdown": "down",
    "arrowleft": "left",
    "arrowright": "right",
    "home": "home",
    "end": "end",
    "pageup": "pageup",
    "pagedown": "pagedown",
    "page_up": "pageup",
    "page_down": "pagedown",
    "capslock": "capslock",
    **{f"f{i}": f"f{i}" for i in range(1, 13)},
}


def pyautogui_keys(keys: list[str]) -> list[str]:
    """``["ctrl", "A"]`` -> ``["ctrl", "a"]`` for ``pyautogui.hotkey``; raises :class:`ActionError` when unknown."""
    out: list[str] = []
    for raw in keys:
        for key in raw.split("+") if len(raw) > 1 else [raw]:
            key = key.strip()
            mapped = _PYAUTOGUI_KEYS.get(key.lower())
            if mapped:
                out.append(mapped)
            elif len(key) == 1:
                out.append(key.lower() if key.isalpha() else key)
            else:
                raise ActionError(f"unknown key name {key!r}; use names like ctrl, alt, shift, enter, esc, tab, a")
    return out
