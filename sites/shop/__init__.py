"""A small shop admin (FastAPI + SQLite + server-rendered pages) for Glassbox tasks.

Usage::

    from sites.shop import ShopServer

    with ShopServer(layout_seed=3) as shop:
        print(shop.base_url)      # http://127.0.0.1:<os-assigned port>

The admin login is ``admin`` / ``Xq7-tulip-4821`` unless other credentials are passed.
"""

from sites.shop.layout import Layout, layout_for_seed
from sites.shop.server import ShopServer

__all__ = ["ShopServer", "Layout", "layout_for_seed"]
