"""SQLite storage of the shop: products and login sessions. One database file per shop instance."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel

CATEGORIES = ["Electronics", "Audio", "Home & Kitchen", "Books", "Clothing", "Toys", "Sports"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    price_cents INTEGER NOT NULL,
    stock INTEGER NOT NULL,
    category TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    image TEXT,
    status TEXT NOT NULL CHECK (status IN ('draft', 'published')),
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""

_SEED_PRODUCTS = [
    ("Ceramic pour-over coffee set", 4500, 32, "Home & Kitchen", "Hand-glazed dripper with two cups."),
    ("Trail running shoes", 8900, 14, "Sports", "Lightweight, with a grippy outsole."),
    ("The Pragmatic Gardener", 2199, 57, "Books", "A year of small-space gardening."),
    ("USB-C charging hub", 3450, 0, "Electronics", "Seven ports, 100 W pass-through."),
]


class Product(BaseModel):
    """A product as the JSON API returns it."""

    id: int
    name: str
    price: float
    stock: int
    category: str
    description: str
    image: str | None
    status: str
    created_at: str


class ShopDB:
    """Thread-safe access to one shop database file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        with self._lock, self._conn:
            self._conn.executescript(_SCHEMA)
            if self._conn.execute("SELECT COUNT(*) FROM products").fetchone()[0] == 0:
                for name, cents, stock, category, desc in _SEED_PRODUCTS:
                    self._conn.execute(
                        "INSERT INTO products (name, price_cents, stock, category, description, image, status,"
                        " created_at) VALUES (?, ?, ?, ?, ?, NULL, 'published', ?)",
                        (name, cents, stock, category, desc, _now()),
                    )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def add_product(
        self,
        *,
        name: str,
        price_cents: int,
        stock: int,
        category: str,
        description: str,
        image: str | None,
        status: str,
    ) -> Product:
        with self._lock, self._conn:
            cur = self._conn.execute(
                "INSERT INTO products (name, price_cents, stock, category, description, image, status, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, price_cents, stock, category, description, image, status, _now()),
            )
            row = self._conn.execute("SELECT * FROM products WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _product(row)

    def products(self, name: str | None = None) -> list[Product]:
        with self._lock:
            if name is None:
                rows = self._conn.execute("SELECT * FROM products ORDER BY id DESC").fetchall()
            else:
                rows = self._conn.execute("SELECT * FROM products WHERE name = ? ORDER BY id DESC", (name,)).fetchall()
        return [_product(r) for r in rows]

    def product(self, product_id: int) -> Product | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM products WHERE id = ?", (product_id,)).fetchone()
        return _product(row) if row else None

    def create_session(self, token: str, username: str) -> None:
        with self._lock, self._conn:
            self._conn.execute("INSERT INTO sessions VALUES (?, ?, ?)", (token, username, _now()))

    def session_user(self, token: str | None) -> str | None:
        if not token:
            return None
        with self._lock:
            row = self._conn.execute("SELECT username FROM sessions WHERE token = ?", (token,)).fetchone()
        return row["username"] if row else None

    def delete_session(self, token: str) -> None:
        with self._lock, self._conn:
            self._conn.execute("DELETE FROM sessions WHERE token = ?", (token,))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _product(row: sqlite3.Row) -> Product:
    return Product(
        id=row["id"],
        name=row["name"],
        price=row["price_cents"] / 100,
        stock=row["stock"],
        category=row["category"],
        description=row["description"],
        image=row["image"],
        status=row["status"],
        created_at=row["created_at"],
    )
