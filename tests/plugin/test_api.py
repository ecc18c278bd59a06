"""The plugin's API on a real ``airflow api-server``: who may read, who may change, and bad input.

The server loads the plugin through the package's entry point (nothing copied into
``plugins/``); users sign in with Airflow's simple auth manager (see ``conftest.py``).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest

from stateful.types import Watermark
from tests.plugin.conftest import PluginServer

# One group: under pytest-xdist (--dist loadgroup) the API and browser tests share one worker,
# so one api-server (plugin_server, per session) serves them all.
pytestmark = [
    pytest.mark.airflow_db,
    pytest.mark.airflow_min("3.3", reason="AIP-103 asset state store"),
    pytest.mark.xdist_group("plugin-api-server"),
]

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


def _row(server: PluginServer, namespace: str, name: str) -> dict[str, Any]:
    with server.client(server.admin) as admin:
        listed = admin.get("/stateful/api/watermarks", params={"q": namespace}).json()
    (found,) = [w for w in _mine(listed, namespace) if w["name"] == name]
    return found


def test_rewind_with_a_reason_writes_a_new_version_kept_in_the_history(plugin_server: PluginServer) -> None:
    ns = f"rewind-{uuid.uuid4().hex[:8]}"
    plugin_server.sql_watermark(ns, "orders", *(Watermark[int](cursor=c) for c in (10, 20, 30)))
    wid = _row(plugin_server, ns, "orders")["id"]

    with plugin_server.client(plugin_server.admin) as admin:
        before = admin.get(f"/stateful/api/watermarks/{wid}")
        rewound = admin.post(
            f"/stateful/api/watermarks/{wid}/rewind",
            json={"expected_version": 3, "to_version": 1, "reason": "replay after INC-42"},
        )
        after = admin.get(f"/stateful/api/watermarks/{wid}")

    assert before.status_code == 200, before.text
    assert before.json()["document"]["cursor"] == 30
    assert [h["version"] for h in before.json()["history"]] == [3, 2, 1]
    assert before.json()["history"][0]["diff"] == [{"path": "/cursor", "op": "change", "old": 20, "new": 30}]
    assert rewound.status_code == 200, rewound.text
    assert (rewound.json()["row"]["version"], rewound.json()["row"]["cursor"]) == (4, "10")
    newest = after.json()["history"][0]
    assert (newest["version"], newest["reason"], newest["document"]["cursor"]) == (
        4,
        "replay after INC-42",
        10,
    )
    assert newest["saved_by"] == "Airflow UI rewind to version 1 by admin"
    assert newest["diff"] == [{"path": "/cursor", "op": "change", "old": 30, "new": 10}]


def test_set_on_an_assets_native_store_through_the_session_cookie(plugin_server: PluginServer) -> None:
    # The page calls the API with the cookie Airflow's UI login sets, not with a bearer token.
    ns = f"set-{uuid.uuid4().hex[:8]}"
    asset = plugin_server.native_watermark(ns, "landing", _file("a.csv"), _file("b.csv"))
    wid = _row(plugin_server, ns, "landing")["id"]

    with plugin_server.client(None) as browser:
        browser.cookies.set("_token", plugin_server.token(plugin_server.admin))
        me = browser.get("/stateful/api/me")
        changed = browser.post(
            f"/stateful/api/watermarks/{wid}/set",
            json={
                "expected_version": 2,
                "fields": {"cursor": "0.csv", "seen": {}, "timestamp": "2026-01-05T10:00:00+01:00"},
                "reason": "start over, INC-7",
            },
        )
        shown = browser.get(f"/stateful/api/watermarks/{wid}").json()

    assert me.json()["username"] == "admin"
    assert changed.status_code == 200, changed.text
    row = changed.json()["row"]
    assert (row["asset"], row["version"], row["cursor"], row["seen"]) == (asset, 3, "0.csv", 0)
    assert row["timestamp"] == "2026-01-05T09:00:00.000000Z"
    assert [h["version"] for h in shown["history"]] == [3, 2, 1]
    assert shown["history"][0]["reason"] == "start over, INC-7"


def test_a_viewer_reads_but_may_not_change(plugin_server: PluginServer) -> None:
    ns = f"viewer-{uuid.uuid4().hex[:8]}"
    plugin_server.sql_watermark(ns, "orders", Watermark[int](cursor=1), Watermark[int](cursor=2))
    wid = _row(plugin_server, ns, "orders")["id"]

    with plugin_server.client(plugin_server.viewer) as viewer:
        me = viewer.get("/stateful/api/me")
        listed = viewer.get("/stateful/api/watermarks")
        shown = viewer.get(f"/stateful/api/watermarks/{wid}")
        rewind = viewer.post(
            f"/stateful/api/watermarks/{wid}/rewind",
            json={"expected_version": 2, "to_version": 1, "reason": "try"},
        )
        changed = viewer.post(
            f"/stateful/api/watermarks/{wid}/set",
            json={"expected_version": 2, "fields": {"cursor": 0}, "reason": "try"},
        )

    assert me.json() == {"username": "viewer", "can_edit": False}
    assert listed.status_code == 200 and [w["name"] for w in _mine(listed.json(), ns)] == ["orders"]
    assert shown.status_code == 200
    assert (rewind.status_code, changed.status_code) == (403, 403)
    assert "may not edit assets" in rewind.json()["detail"]
    assert _row(plugin_server, ns, "orders")["version"] == 2  # nothing was written


def test_signed_out_callers_get_401_from_every_endpoint(plugin_server: PluginServer) -> None:
    with plugin_server.client(None) as anyone:
        answers = [
            anyone.get("/stateful/api/me"),
            anyone.get("/stateful/api/watermarks"),
            anyone.get("/stateful/api/watermarks/x"),
            anyone.post("/stateful/api/watermarks/x/rewind", json={}),
            anyone.post("/stateful/api/watermarks/x/set", json={}),
        ]
    assert [a.status_code for a in answers] == [401] * 5


def test_bad_requests_get_404_409_and_422_and_write_nothing(plugin_server: PluginServer) -> None:
    ns = f"bad-{uuid.uuid4().hex[:8]}"
    plugin_server.sql_watermark(ns, "orders", Watermark[int](cursor=1), Watermark[int](cursor=2))
    wid = _row(plugin_server, ns, "orders")["id"]
    good = {"expected_version": 2, "to_version": 1, "reason": "replay"}

    with plugin_server.client(plugin_server.admin) as admin:
        unknown = admin.get("/stateful/api/watermarks/bm90LWFuLWlk")
        stale = admin.post(f"/stateful/api/watermarks/{wid}/rewind", json={**good, "expected_version": 1})
        no_reason = admin.post(f"/stateful/api/watermarks/{wid}/rewind", json={**good, "reason": " "})
        malformed = admin.post(
            f"/stateful/api/watermarks/{wid}/rewind", json={"expected_version": "two", "to_version": 1}
        )
        not_kept = admin.post(f"/stateful/api/watermarks/{wid}/rewind", json={**good, "to_version": 9})
        # What a form on another site could send with the session cookie: refused, not parsed.
        as_text = admin.post(
            f"/stateful/api/watermarks/{wid}/rewind",
            content=json.dumps(good),
            headers={"Content-Type": "text/plain"},
        )
        wrong_kind = admin.post(
            f"/stateful/api/watermarks/{wid}/set",
            json={"expected_version": 2, "fields": {"cursor": "two"}, "reason": "typo"},
        )

    assert unknown.status_code == 404 and "no watermark with id" in unknown.json()["detail"]
    assert stale.status_code == 409, stale.text
    assert "you saw version 1, it is version 2 now" in stale.json()["detail"]
    assert no_reason.status_code == 422 and "reason is empty" in no_reason.json()["detail"]
    assert malformed.status_code == 422
    detail = malformed.json()["detail"]
    assert "expected_version: Input should be a valid integer" in detail
    assert "reason: Field required" in detail
    assert not_kept.status_code == 422 and "version 9 is not in the history" in not_kept.json()["detail"]
    assert wrong_kind.status_code == 422 and "the stored cursor is integer 2" in wrong_kind.json()["detail"]
    assert as_text.status_code == 422
    assert _row(plugin_server, ns, "orders")["version"] == 2
