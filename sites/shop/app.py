"""The shop admin web app: login, dashboard, product list, new-product form, JSON API.

Build one with :func:`create_app`; :class:`sites.shop.ShopServer` serves it on 127.0.0.1.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import TypedDict

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import UploadFile

from sites.shop.db import CATEGORIES, Product, ShopDB
from sites.shop.layout import Layout

_HERE = Path(__file__).parent
_COOKIE = "shop_session"
_MAX_IMAGE_BYTES = 5 * 1024 * 1024
_IMAGE_TYPES = {b"\x89PNG": "png", b"\xff\xd8\xff": "jpg", b"RIFF": "webp", b"GIF8": "gif"}


@cache
def _templates() -> Jinja2Templates:
    """One template set per process: an eval worker starts a shop per episode, and compiling the templates
    again for each was a few percent of an episode's CPU. Rendering takes everything per-shop as arguments."""
    return Jinja2Templates(directory=str(_HERE / "templates"))


def create_app(*, data_dir: Path, layout: Layout, username: str, password: str) -> FastAPI:
    """Return the shop app storing its database and uploads in ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    uploads = data_dir / "uploads"
    uploads.mkdir(exist_ok=True)
    db = ShopDB(data_dir / "shop.sqlite3")
    templates = _templates()
    app = FastAPI(title="Glassbox demo shop", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.db = db
    admin_user, admin_password = username, password

    def page(request: Request, name: str, status_code: int = 200, **context: object) -> HTMLResponse:
        user = db.session_user(request.cookies.get(_COOKIE))
        return templates.TemplateResponse(
            request,
            name,
            {"layout": layout, "user": user, "categories": CATEGORIES, **context},
            status_code=status_code,
        )

    def require_user(request: Request) -> str | None:
        return db.session_user(request.cookies.get(_COOKIE))

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> Response:
        return page(request, "login.html", error=None, username="")

    @app.post("/login")
    def login(request: Request, username: str = Form(""), password: str = Form("")) -> Response:
        if username == admin_user and secrets.compare_digest(password.encode(), admin_password.encode()):
            token = secrets.token_urlsafe(24)
            db.create_session(token, username)
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(_COOKIE, token, httponly=True, samesite="lax")
            return response
        return page(request, "login.html", status_code=401, error="Invalid username or password.", username=username)

    @app.post("/logout")
    def logout(request: Request) -> Response:
        token = request.cookies.get(_COOKIE)
        if token:
            db.delete_session(token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(_COOKIE)
        return response

    @app.get("/", response_class=HTMLResponse)
    def dashboard(request: Request) -> Response:
        if not require_user(request):
            return RedirectResponse("/login", status_code=303)
        products = db.products()
        stats = {
            "products": len(products),
            "published": sum(p.status == "published" for p in products),
            "out_of_stock": sum(p.stock == 0 for p in products),
            "orders": 18,
        }
        return page(request, "dashboard.html", active="Dashboard", stats=stats, recent=products[:5])

    @app.get("/products", response_class=HTMLResponse)
    def product_list(request: Request, created: int | None = None) -> Response:
        if not require_user(request):
            return RedirectResponse("/login", status_code=303)
        created_product = db.product(created) if created else None
        return page(request, "products.html", active="Products", products=db.products(), created=created_product)

    @app.get("/products/new", response_class=HTMLResponse)
    def new_product_form(request: Request) -> Response:
        if not require_user(request):
            return RedirectResponse("/login", status_code=303)
        return page(request, "product_new.html", active="Products", errors={}, values={})

    @app.post("/products/new")
    async def create_product(request: Request) -> Response:
        if not require_user(request):
            return RedirectResponse("/login", status_code=303)
        form = await request.form()
        values = {k: str(form.get(k, "")) for k in ("name", "price", "stock", "category", "description")}
        status = "published" if form.get("intent") == "publish" else "draft"
        errors, clean = _validate(values)
        image = form.get("image")
        image_name = None
        if isinstance(image, UploadFile) and image.filename:
            content = await image.read()
            kind = _image_kind(content)
            if len(content) > _MAX_IMAGE_BYTES:
                errors["image"] = "The image is larger than 5 MB."
            elif kind is None:
                errors["image"] = "The main image must be a PNG, JPEG, WebP or GIF file."
            elif not errors:
                image_name = f"{uuid.uuid4().hex}.{kind}"
                (uploads / image_name).write_bytes(content)
        if status == "published" and image_name is None and "image" not in errors:
            errors["image"] = "A main image is required to publish."
        if errors:
            return page(request, "product_new.html", status_code=422, active="Products", errors=errors, values=values)
        product = db.add_product(image=image_name, status=status, **clean)
        return RedirectResponse(f"/products?created={product.id}", status_code=303)

    @app.get("/uploads/{name}")
    def upload(name: str) -> Response:
        if not re.fullmatch(r"[0-9a-f]{32}\.(png|jpg|webp|gif)", name):
            raise HTTPException(404)
        path = uploads / name
        if not path.is_file():
            raise HTTPException(404)
        return FileResponse(path)

    @app.get("/api/products")
    def api_products(name: str | None = None) -> dict[str, list[Product]]:
        return {"items": db.products(name)}

    @app.get("/api/products/{product_id}")
    def api_product(product_id: int) -> Product:
        product = db.product(product_id)
        if product is None:
            raise HTTPException(404, f"no product {product_id}")
        return product

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # Registered last: the catch-all path must not shadow /healthz or /api.
    @app.get("/{section}", response_class=HTMLResponse)
    def other_section(request: Request, section: str) -> Response:
        titles = {"orders": "Orders", "customers": "Customers", "settings": "Settings"}
        if section not in titles:
            raise HTTPException(404)
        if not require_user(request):
            return RedirectResponse("/login", status_code=303)
        message = {
            "orders": "18 open orders. Order management is not part of this demo.",
            "customers": "1,204 customers. Customer management is not part of this demo.",
            "settings": "Store settings are read-only in this demo.",
        }[section]
        return page(request, "simple.html", active=titles[section], message=message)

    return app


class _ProductFields(TypedDict):
    """The validated form fields, as ``ShopDB.add_product`` takes them."""

    name: str
    price_cents: int
    stock: int
    category: str
    description: str


def _validate(values: Mapping[str, str]) -> tuple[dict[str, str], _ProductFields]:
    errors: dict[str, str] = {}
    name = values["name"].strip()
    if not name:
        errors["name"] = "Product name is required."
    elif len(name) > 120:
        errors["name"] = "Product name must be at most 120 characters."
    price_cents = 0
    try:
        price = Decimal(values["price"].strip().replace(",", ""))
        if price <= 0 or price >= 1_000_000:
            errors["price"] = "Price must be greater than 0 and below 1,000,000."
        elif price != price.quantize(Decimal("0.01")):
            errors["price"] = "Price can have at most two decimals."
        else:
            price_cents = int(price * 100)
    except InvalidOperation:
        errors["price"] = "Price must be a number, e.g. 19.99."
    stock = 0
    raw_stock = values["stock"].strip()
    if not re.fullmatch(r"\d{1,7}", raw_stock):
        errors["stock"] = "Stock must be a whole number of 0 or more."
    else:
        stock = int(raw_stock)
    if values["category"] not in CATEGORIES:
        errors["category"] = "Choose a category."
    description = values["description"].strip()
    if len(description) > 2000:
        errors["description"] = "Description must be at most 2000 characters."
    clean: _ProductFields = {
        "name": name,
        "price_cents": price_cents,
        "stock": stock,
        "category": values["category"],
        "description": description,
    }
    return errors, clean


def _image_kind(content: bytes) -> str | None:
    for magic, kind in _IMAGE_TYPES.items():
        if content.startswith(magic):
            if kind == "webp" and content[8:12] != b"WEBP":
                return None
            return kind
    return None


__all__ = ["create_app"]
