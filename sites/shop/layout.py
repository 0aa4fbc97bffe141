"""Layout seeds: the same shop, arranged differently, so no policy can rely on fixed coordinates.

Seed 0 is the default look. Any other seed shuffles the navigation order and the form fields,
moves the action buttons and picks another colour theme, deterministically.
"""

from __future__ import annotations

import random

from pydantic import BaseModel

NAV_ITEMS = ["Dashboard", "Products", "Orders", "Customers", "Settings"]
FORM_FIELDS = ["name", "price", "stock", "category", "description", "image"]
BUTTON_PLACEMENTS = ["bottom-left", "bottom-right", "top-right", "sidebar"]
THEMES = [
    {"name": "indigo", "accent": "#4f46e5", "accent_dark": "#3730a3", "sidebar": "#1e1b4b", "bg": "#f5f6fa"},
    {"name": "teal", "accent": "#0f766e", "accent_dark": "#115e59", "sidebar": "#134e4a", "bg": "#f1f7f6"},
    {"name": "amber", "accent": "#b45309", "accent_dark": "#92400e", "sidebar": "#292524", "bg": "#faf7f2"},
    {"name": "rose", "accent": "#be123c", "accent_dark": "#9f1239", "sidebar": "#3f0d1d", "bg": "#fbf5f6"},
    {"name": "slate", "accent": "#2563eb", "accent_dark": "#1d4ed8", "sidebar": "#0f172a", "bg": "#f8fafc"},
]


class Layout(BaseModel):
    """Where things are for one layout seed."""

    seed: int
    nav_items: list[str]
    form_fields: list[str]
    button_placement: str
    theme: dict[str, str]
    sidebar_side: str  # "left" or "right"
    header_height: int


def layout_for_seed(seed: int) -> Layout:
    """Return the layout for ``seed`` (0 = the default look)."""
    if seed == 0:
        return Layout(
            seed=0,
            nav_items=list(NAV_ITEMS),
            form_fields=list(FORM_FIELDS),
            button_placement="bottom-left",
            theme=THEMES[0],
            sidebar_side="left",
            header_height=56,
        )
    rng = random.Random(seed)
    nav = list(NAV_ITEMS)
    fields = list(FORM_FIELDS)
    # Keep shuffling until it really differs from the default, so seed != 0 always moves things.
    while nav == NAV_ITEMS:
        rng.shuffle(nav)
    while fields == FORM_FIELDS:
        rng.shuffle(fields)
    return Layout(
        seed=seed,
        nav_items=nav,
        form_fields=fields,
        button_placement=rng.choice(BUTTON_PLACEMENTS[1:]),
        theme=rng.choice(THEMES[1:]),
        sidebar_side=rng.choice(["left", "right"]),
        header_height=rng.choice([48, 64, 88]),
    )
