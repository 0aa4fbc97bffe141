"""The demo shop over real HTTP on 127.0.0.1: login, validation, publishing, API, layout seeds."""

from __future__ import annotations

import httpx
import pytest

from sites.shop import ShopServer, layout_for_seed
from tests.conftest import TASKS

PNG = (TASKS / "fixtures" / "desk_lamp.png").read_bytes()


def signed_in(shop: ShopServer) -> httpx.Client:
    client = httpx.Client(base_url=shop.base_url)
    response = client.post("/login", data={"username": "admin", "password": "Xq7-tulip-4821"})
    assert response.status_code == 303
    return client


def test_listens_on_loopback_with_an_os_assigned_port(shop):
    assert shop.base_url.startswith("http://127.0.0.1:")
    assert shop.port and shop.port != 8765
    assert httpx.get(shop.base_url + "/healthz").json() == {"status": "ok"}


def test_pages_need_a_login(shop):
    response = httpx.get(shop.base_url + "/products/new")
    assert response.status_code == 303 and response.headers["location"] == "/login"
    bad = httpx.post(shop.base_url + "/login", data={"username": "admin", "password": "wrong"})
    assert bad.status_code == 401 and "Invalid username or password" in bad.text


def test_validation_errors_are_shown_on_the_page(shop):
    client = signed_in(shop)
    response = client.post(
        "/products/new", data={"name": "", "price": "abc", "stock": "-3", "category": "Nope", "intent": "publish"}
    )
    assert response.status_code == 422
    for message in (
        "Product name is required.",
        "Price must be a number",
        "Stock must be a whole number",
        "Choose a category.",
        "A main image is required to publish.",
    ):
        assert message in response.text
    assert client.get("/api/products").json()["items"][0]["name"] != ""


def test_publish_with_image_then_read_it_from_the_api(shop):
    client = signed_in(shop)
    response = client.post(
        "/products/new",
        data={
            "name": "Lamp",
            "price": "39.90",
            "stock": "25",
            "category": "Home & Kitchen",
            "description": "Warm light",
            "intent": "publish",
        },
        files={"image": ("lamp.png", PNG, "image/png")},
    )
    assert response.status_code == 303
    page = client.get(response.headers["location"])
    assert "Product “Lamp” was published." in page.text
    [item] = client.get("/api/products", params={"name": "Lamp"}).json()["items"]
    assert (item["price"], item["stock"], item["status"], item["category"]) == (39.9, 25, "published", "Home & Kitchen")
    assert client.get(f"/uploads/{item['image']}").content == PNG


def test_a_non_image_upload_is_refused(shop):
    client = signed_in(shop)
    response = client.post(
        "/products/new",
        data={"name": "X", "price": "1", "stock": "1", "category": "Books", "intent": "publish"},
        files={"image": ("x.png", b"not an image", "image/png")},
    )
    assert response.status_code == 422 and "must be a PNG, JPEG, WebP or GIF" in response.text


def test_draft_needs_no_image_and_upload_names_are_checked(shop):
    client = signed_in(shop)
    response = client.post(
        "/products/new", data={"name": "D", "price": "2.50", "stock": "0", "category": "Toys", "intent": "draft"}
    )
    assert response.status_code == 303
    assert client.get("/api/products", params={"name": "D"}).json()["items"][0]["status"] == "draft"
    assert client.get("/uploads/..%2Fshop.sqlite3").status_code == 404


def test_every_instance_starts_with_a_fresh_database():
    with ShopServer() as first:
        client = signed_in(first)
        client.post(
            "/products/new", data={"name": "Only here", "price": "1", "stock": "1", "category": "Books", "intent": "draft"}
        )
        assert client.get("/api/products", params={"name": "Only here"}).json()["items"]
    with ShopServer() as second:
        assert httpx.get(second.base_url + "/api/products", params={"name": "Only here"}).json()["items"] == []


def test_layout_seed_zero_is_the_default_and_others_move_things():
    default = layout_for_seed(0)
    assert default.nav_items[0] == "Dashboard" and default.form_fields[0] == "name"
    others = [layout_for_seed(s) for s in range(1, 9)]
    for layout in others:
        assert layout.nav_items != default.nav_items
        assert layout.form_fields != default.form_fields
        assert layout.theme != default.theme
    assert layout_for_seed(5) == layout_for_seed(5)
    assert len({tuple(lay.form_fields) for lay in others}) > 3


@pytest.mark.parametrize("seed", [0, 4])
def test_form_follows_the_layout(seed):
    with ShopServer(layout_seed=seed) as shop:
        html = signed_in(shop).get("/products/new").text
    order = sorted(layout_for_seed(seed).form_fields, key=lambda f: html.index(f'id="{f}"'))
    assert order == layout_for_seed(seed).form_fields


def test_a_stop_without_waiting_winds_down_on_a_thread_the_process_waits_for():
    """An episode hands the shop's wind-down to a thread: it still stops serving, closes the database and removes
    the temporary folder, and the process waits for it at exit (not a daemon)."""
    import threading

    shop = ShopServer().start()
    url, folder = shop.base_url, shop.data_dir
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}
    shop.stop(wait=False)
    closer = next(t for t in threading.enumerate() if t.name == "shop-server-stop")
    assert not closer.daemon
    closer.join(timeout=10)
    assert not closer.is_alive() and not folder.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/healthz")
