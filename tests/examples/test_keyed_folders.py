"""The keyed-folders example on the real SQLite default store: one watermark per folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.keyed_folders import NewFilesPerFolderTrigger
from stateful.backends import SqlBackend
from stateful.backends.sql import dispose_default_stores
from stateful.types import Watermark

pytestmark = pytest.mark.airflow_min("3.1", reason="the examples use airflow.sdk.BaseHook and DAG bundles")


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'stateful.db'}"
    monkeypatch.setenv("STATEFUL_DATABASE_URL", url)
    dispose_default_stores()
    yield url
    dispose_default_stores()


def land(inbox: Path, folder: str, name: str, mtime: int) -> None:
    path = inbox / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(name)
    os.utime(path, (mtime, mtime))


async def poll(inbox: Path) -> list[str]:
    return [e.payload["path"] async for e in NewFilesPerFolderTrigger(str(inbox)).run()]


async def test_each_folder_keeps_its_watermark_across_restarts_and_rewinds(
    tmp_path: Path, database: str
) -> None:
    inbox = tmp_path / "inbox"
    land(inbox, "acme", "a1.csv", 1_700_000_000)
    land(inbox, "globex", "g1.csv", 1_700_000_100)
    (inbox / "loose.csv").write_text("no folder")

    assert await poll(inbox) == ["acme/a1.csv", "globex/g1.csv"]
    assert await poll(inbox) == []  # a restart: nothing again

    # A new folder whose files are years older than every other folder's starts from nothing (one
    # watermark for all would skip them as outside the lookback); a late acme file is inside acme's.
    land(inbox, "acme", "a0.csv", 1_699_999_000)
    land(inbox, "initech", "i1.csv", 1_600_000_000)
    assert await poll(inbox) == ["initech/i1.csv", "acme/a0.csv"]

    # Rewinding acme (an operator's reset of that partition) re-emits acme's files only.
    store = SqlBackend(database)
    acme = store.read("files", str(inbox), "watermark[acme]")
    assert acme is not None
    store.write("files", str(inbox), acme.key, Watermark().to_state_json(), expected_version=acme.version)
    assert sorted(await poll(inbox)) == ["acme/a0.csv", "acme/a1.csv"]
    assert [r.key for r in store.list_name("files", str(inbox))] == [
        "watermark[acme]",
        "watermark[globex]",
        "watermark[initech]",
    ]
    store.dispose()
