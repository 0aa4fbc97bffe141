"""Visitor registration form (Tk). Saves the fields as JSON to the file given on the command line.

    python -m sites.desktop_form.app OUT.json

The window sits at the top-left corner of the screen with a fixed size, so tasks can name points on it.
"""

from __future__ import annotations

import json
import sys
import tkinter as tk
from collections.abc import Callable
from pathlib import Path

WIDTH, HEIGHT = 640, 420


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("registration.json")
    root = tk.Tk()
    root.title("Visitor registration")
    root.geometry(f"{WIDTH}x{HEIGHT}+0+0")
    root.resizable(False, False)
    root.configure(bg="#f5f6fa")
    font = ("DejaVu Sans", 12)
    tk.Label(root, text="Visitor registration", font=("DejaVu Sans", 16, "bold"), bg="#f5f6fa").place(x=30, y=20)
    fields: dict[str, tk.Entry] = {}
    for i, (key, label) in enumerate((("name", "Full name"), ("email", "Email"), ("city", "City (城市)"))):
        caption = tk.Label(root, text=label, font=font, bg="#f5f6fa")
        caption.place(x=30, y=80 + i * 60)
        entry = tk.Entry(root, font=font, width=30)
        entry.place(x=200, y=78 + i * 60, width=380, height=30)
        # Like an HTML <label>: clicking the caption focuses its field (a script may click a field by its label).
        caption.bind("<Button-1>", _focus(entry))
        fields[key] = entry
    newsletter = tk.BooleanVar(value=False)
    tk.Checkbutton(
        root, text="Send me the newsletter", variable=newsletter, font=font, bg="#f5f6fa", activebackground="#f5f6fa"
    ).place(x=196, y=262)
    status = tk.Label(root, text="", font=font, bg="#f5f6fa", fg="#166534")
    status.place(x=30, y=370)

    def save() -> None:
        data = {key: entry.get() for key, entry in fields.items()} | {"newsletter": newsletter.get()}
        if not fields["name"].get().strip():
            status.configure(text="Full name is required.", fg="#b91c1c")
            return
        out.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        status.configure(text="Saved.", fg="#166534")
        root.title("Visitor registration - saved")

    tk.Button(
        root, text="Save", font=font, command=save, bg="#4f46e5", fg="white", activebackground="#3730a3", activeforeground="white"
    ).place(x=200, y=310, width=100, height=36)
    root.mainloop()


def _focus(entry: tk.Entry) -> Callable[[object], None]:
    return lambda _event: entry.focus_set()


if __name__ == "__main__":
    main()
