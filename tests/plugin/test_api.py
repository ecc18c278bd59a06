"""The plugin's API on a real ``airflow api-server``: who may read, who may change, and bad input.

The server loads the plugin through the package's entry point (nothing copied into
``plugins/``); users sign in with Airflow's simple auth manager (see ``conftest.py``).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import pytest

from stateful.types import Watermark
from tests.plugin.conftest import PluginServer

pytestmark = [pytest.mark.airflow_db, pytest.mark.airflow_min("3.3", reason="AIP-103 asset state store")]

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def _file(name: str) -> Watermark[str]:
    watermark = Watermark[str]()
    watermark.advance(cursor=name, key=name)
    return watermark


def _mine(listing: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    return [w for w in listing["watermarks"] if w["namespace"] == namespace]


def test_the_page_and_the_nav_entry_are_served(plugin_server: PluginServer) -> None:
    with plugin_server.client(plugin_server.admin) as admin:
        plugins = admin.get("/api/v2/plugins").json()["plugins"]
    with plugin_server.client(None) as anyone:
        page = anyone.get("/stateful/")

    ours = next(p for p in plugins if p["name"] == "stateful")
    assert [v["href"] for v in ours["external_views"]] == ["/stateful/"]
    assert [a["url_prefix"] for a in ours["fastapi_apps"]] == ["/stateful"]
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")


def test_an_admin_lists_sql_and_native_watermarks(plugin_server: PluginServer) -> None:
    ns = f"list-{uuid.uuid4().hex[:8]}"
    plugin_server.sql_watermark(
        ns, "orders", Watermark[int](cursor=1), Watermark[int](cursor=2, timestamp=T0)
    )
    asset = plugin_server.native_watermark(ns, "landing", _file("a.csv"))

    with plugin_server.client(plugin_server.admin) as admin:
        me = admin.get("/stateful/api/me")
        listed = admin.get("/stateful/api/watermarks")

    assert me.status_code == 200, me.text
    assert me.json() == {"username": "admin", "can_edit": True}
    assert listed.status_code == 200, listed.text
    rows = {w["name"]: w for w in _mine(listed.json(), ns)}
    assert set(rows) == {"orders", "landing"}
    assert (rows["orders"]["store"], rows["orders"]["asset"], rows["orders"]["version"]) == ("sql", None, 2)
    assert rows["orders"]["cursor"] == "2"
    assert rows["orders"]["timestamp"] == "2026-01-05T09:00:00.000000Z"
    assert rows["orders"]["lag_seconds"] > 0
    assert (rows["landing"]["store"], rows["landing"]["asset"]) == ("native", asset)
    assert (rows["landing"]["cursor"], rows["landing"]["seen"], rows["landing"]["version"]) == ("a.csv", 1, 1)
    assert rows["landing"]["lag_seconds"] is None
    kinds = {s["kind"] for s in listed.json()["stores"]}
    assert kinds == {"sql", "native"}
    assert all(s["error"] is None for s in listed.json()["stores"] if s["kind"] == "sql")
