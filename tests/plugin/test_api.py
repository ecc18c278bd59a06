"""The plugin's API on a real ``airflow api-server``: who may read, who may change, and bad input.

The server loads the plugin through the package's entry point (nothing copied into
``plugins/``); users sign in with Airflow's simple auth manager (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from stateful import Keyed, stateful
from stateful._address import partition_key
from stateful.backends import SqlBackend
from stateful.backends.base import Address, Write
from stateful.backends.native.index import index_key, index_part_key
from stateful.plugin._rows import decode_id, encode_id
from stateful.types import Watermark
from tests._airflow import stored_value
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
        listed = admin.get("/stateful/api/watermarks", params={"limit": 5000})  # every row of the session

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
        listed = viewer.get("/stateful/api/watermarks", params={"limit": 5000})
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


# -- keyed watermarks: one row per partition ----------------------------------------------------


def _run_keyed(server: PluginServer, namespace: str, items: list[tuple[str, int]]) -> list[str]:
    """A keyed trigger (one watermark per partition) run once on the server's SQL store."""
    store = SqlBackend(server.sql_url, history_versions=100)

    class Prefixes:
        @stateful(namespace=namespace, name="2026", backend=store)
        async def run(self, keyed: Keyed[Watermark[int]]) -> AsyncIterator[str]:
            for partition, n in items:
                if n > (keyed[partition].cursor or 0):
                    keyed[partition].advance(cursor=n, timestamp=T0 + timedelta(minutes=n))
                    yield f"{partition}/{n}"

    async def events() -> list[str]:
        return [event async for event in Prefixes().run()]

    try:
        return asyncio.run(events())
    finally:
        store.dispose()


def _listing(server: PluginServer, **params: Any) -> dict[str, Any]:
    with server.client(server.admin) as admin:
        answer = admin.get("/stateful/api/watermarks", params=params)
    assert answer.status_code == 200, answer.text
    listing: dict[str, Any] = answer.json()
    return listing


def _partitions(server: PluginServer, namespace: str) -> dict[str, dict[str, Any]]:
    """The rows of ``namespace`` by partition (``None`` for a plain watermark)."""
    return {w["partition"]: w for w in _mine(_listing(server, q=namespace), namespace)}


def test_each_partition_of_a_keyed_sql_watermark_is_a_row_edited_alone(plugin_server: PluginServer) -> None:
    ns = f"keyed-{uuid.uuid4().hex[:8]}"
    assert _run_keyed(plugin_server, ns, [("eu", 1), ("us", 5), ("ap", 7)]) == ["eu/1", "us/5", "ap/7"]
    assert _run_keyed(plugin_server, ns, [("eu", 3), ("us", 5)]) == ["eu/3"]

    rows = _partitions(plugin_server, ns)
    assert set(rows) == {"eu", "us", "ap"}
    eu = rows["eu"]
    assert (eu["name"], eu["key"], eu["store"], eu["cursor"]) == ("2026", "watermark[eu]", "sql", "3")
    assert eu["timestamp"] == "2026-01-05T09:03:00.000000Z" and eu["lag_seconds"] > 0
    assert (rows["us"]["cursor"], rows["ap"]["cursor"]) == ("5", "7")
    # The filter finds a partition by its key, and by namespace/name.
    found = _mine(_listing(plugin_server, q=f"{ns}/2026"), ns)
    assert sorted(w["partition"] for w in found) == ["ap", "eu", "us"]
    assert [w["partition"] for w in _mine(_listing(plugin_server, q="watermark[ap]"), ns)] == ["ap"]

    others = {p: (rows[p]["version"], rows[p]["cursor"]) for p in ("us", "ap")}
    with plugin_server.client(plugin_server.admin) as admin:
        shown = admin.get(f"/stateful/api/watermarks/{eu['id']}").json()
        changed = admin.post(
            f"/stateful/api/watermarks/{eu['id']}/set",
            json={"expected_version": eu["version"], "fields": {"cursor": 0}, "reason": "replay eu"},
        )
        stale = admin.post(
            f"/stateful/api/watermarks/{eu['id']}/set",
            json={"expected_version": eu["version"], "fields": {"cursor": 1}, "reason": "again"},
        )
        rewound = admin.post(
            f"/stateful/api/watermarks/{eu['id']}/rewind",
            json={"expected_version": eu["version"] + 1, "to_version": 1, "reason": "back to the first"},
        )
        history = admin.get(f"/stateful/api/watermarks/{eu['id']}").json()["history"]

    assert (shown["row"]["partition"], shown["document"]["cursor"]) == ("eu", 3)
    assert [h["document"]["cursor"] for h in shown["history"]] == [3, 1]  # eu's versions only
    assert changed.status_code == 200, changed.text
    assert (changed.json()["row"]["partition"], changed.json()["row"]["cursor"]) == ("eu", "0")
    assert stale.status_code == 409 and "Nothing was written" in stale.json()["detail"]
    assert rewound.status_code == 200, rewound.text
    assert [(h["document"]["cursor"], h["reason"]) for h in history[:2]] == [
        (1, "back to the first"),
        (0, "replay eu"),
    ]
    assert history[0]["saved_by"] == "Airflow UI rewind to version 1 by admin"
    after = _partitions(plugin_server, ns)
    assert after["eu"]["cursor"] == "1"
    assert {p: (after[p]["version"], after[p]["cursor"]) for p in ("us", "ap")} == others


def test_each_partition_of_a_keyed_native_watermark_is_a_row_and_its_index_is_not(
    plugin_server: PluginServer,
) -> None:
    ns = f"keyednative-{uuid.uuid4().hex[:8]}"

    def save(*changes: tuple[str, int, int | None]) -> None:
        """One keyed save (one write_many): the partitions an event changed."""
        store.write_many(
            [
                Write(Address(ns, "2026", partition_key(p)), Watermark[int](cursor=c).to_state_json(), v)
                for p, c, v in changes
            ]
        )

    regions = [(f"region-{n:02}", n, None) for n in range(40)]
    # Values of at most 1,000 bytes: the index of 43 partitions continues in numbered parts.
    with plugin_server.native_asset(max_value_bytes=1000) as (asset, asset_id, store):
        save(("eu", 1, None), ("us", 5, None), ("gone", 9, None))
        save(("eu", 2, 1))
        save(*regions)
        # The index lists every partition; deleting a partition's document leaves its entry.
        assert store.delete(ns, "2026", partition_key("gone")) is True
        index = stored_value(asset_id, index_key(ns, "2026"))
        part = stored_value(asset_id, index_part_key(ns, "2026", 1))

    rows = _partitions(plugin_server, ns)
    assert index["parts"] >= 1 and part["keys"]
    assert {"watermark[eu]", "watermark[gone]", "watermark[us]"} <= {*index["keys"], *part["keys"]}
    # Neither the index (its head, its parts) nor the deleted partition is a row.
    assert set(rows) == {"eu", "us", *(r for r, _, _ in regions)}
    assert all(r["asset"] == asset and r["key"].startswith("watermark[") for r in rows.values())
    listing = _listing(plugin_server, q=asset)
    (native,) = [s for s in listing["stores"] if s["label"] == f"asset {asset!r}"]
    assert native["error"] is None
    eu, us = rows["eu"], rows["us"]
    assert (eu["version"], eu["cursor"], us["version"], us["cursor"]) == (2, "2", 1, "5")

    with plugin_server.client(plugin_server.admin) as admin:
        shown = admin.get(f"/stateful/api/watermarks/{eu['id']}").json()
        changed = admin.post(
            f"/stateful/api/watermarks/{eu['id']}/set",
            json={"expected_version": 2, "fields": {"cursor": 0}, "reason": "replay eu"},
        )
        rewound = admin.post(
            f"/stateful/api/watermarks/{eu['id']}/rewind",
            json={"expected_version": 3, "to_version": 2, "reason": "undo the replay"},
        )
        gone = admin.get(f"/stateful/api/watermarks/{_other_key(eu['id'], 'watermark[gone]')}")

    assert [h["document"]["cursor"] for h in shown["history"]] == [2, 1]
    assert changed.status_code == 200, changed.text
    assert rewound.status_code == 200, rewound.text
    assert (rewound.json()["row"]["partition"], rewound.json()["row"]["version"]) == ("eu", 4)
    assert gone.status_code == 404 and "partition 'gone'" in gone.json()["detail"]
    after = _partitions(plugin_server, ns)
    assert (after["eu"]["cursor"], after["eu"]["version"]) == ("2", 4)
    assert (after["us"]["cursor"], after["us"]["version"]) == ("5", 1)
    # An edit of an existing partition does not touch the index.
    assert stored_value(asset_id, index_key(ns, "2026")) == index


def _other_key(watermark_id: str, key: str) -> str:
    """The id of another document of the same store and name (ids are opaque to the page only)."""
    where = decode_id(watermark_id)
    assert where is not None
    return encode_id(dataclasses.replace(where, key=key))


def test_the_list_is_filtered_sorted_and_cut_into_pages_by_the_server(plugin_server: PluginServer) -> None:
    ns = f"pages-{uuid.uuid4().hex[:8]}"
    plugin_server.sql_partitions(ns, "2026", {f"p{n}": [Watermark[int](cursor=n)] for n in range(1, 26)})

    first = _listing(plugin_server, q=ns, limit=10)
    last = _listing(plugin_server, q=ns, limit=10, offset=20)
    by_cursor = _listing(plugin_server, q=ns, sort="cursor", order="desc", limit=3)
    everything = _listing(plugin_server, limit=5000)

    assert (first["matched"], first["limit"], len(first["watermarks"])) == (25, 10, 10)
    # Partitions in natural order: p1, p2, ... p10 (not p1, p10, p11, ...).
    assert [w["partition"] for w in first["watermarks"]] == [f"p{n}" for n in range(1, 11)]
    assert [w["partition"] for w in last["watermarks"]] == [f"p{n}" for n in range(21, 26)]
    assert [w["cursor"] for w in by_cursor["watermarks"]] == ["25", "24", "23"]
    assert first["total"] == everything["total"] == len(everything["watermarks"]) >= 25
    with plugin_server.client(plugin_server.admin) as admin:
        refused = [
            admin.get("/stateful/api/watermarks", params=params).status_code
            for params in ({"limit": 0}, {"limit": 5001}, {"offset": -1}, {"sort": "value"}, {"order": "up"})
        ]
    assert refused == [422] * 5
