"""The store contract, run against every backend, through both the sync and the async API.

Each test body runs twice per backend: :class:`Store` calls either the blocking methods or
awaits their async twins, so the two APIs cannot drift apart unnoticed.

The Airflow-native store runs every test except two features it does not have, for reasons
outside it: listing (Airflow's Execution API cannot list an asset's keys) and values over
``[state_store] max_value_storage_bytes`` (refused on purpose). Those tests run on
``LISTING_STORES``; tests/backends/test_native.py checks both refusals. Its compare-and-set is
emulated (read, compare, write), which these sequential tests cannot tell from an atomic one;
the window it leaves is documented in docs/stores.md.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stateful._layout import Layout, part_id
from stateful.backends import AsyncStateBackend, NativeBackend, StateBackend, StateRecord
from stateful.backends.base import default_writer
from stateful.errors import StateConflictError, StatefulError
from tests.backends.conftest import DualBackend
from tests.conftest import POSTGRES_PARAM

NS, NAME, KEY = "files", "landing", "watermark"
#: Stores that list their documents and take values of any size (see the module docstring).
LISTING_STORES = ["memory", "sqlite", POSTGRES_PARAM]


@dataclass
class Store:
    """One API over the sync or async methods of a store."""

    backend: DualBackend
    use_async: bool

    async def read(self, namespace: str = NS, name: str = NAME, key: str = KEY) -> StateRecord | None:
        if self.use_async:
            return await self.backend.aread(namespace, name, key)
        return self.backend.read(namespace, name, key)

    async def write(
        self,
        value: str,
        expected_version: int | None,
        namespace: str = NS,
        name: str = NAME,
        key: str = KEY,
        updated_by: str | None = None,
        reason: str | None = None,
    ) -> int:
        if self.use_async:
            return await self.backend.awrite(
                namespace,
                name,
                key,
                value,
                expected_version=expected_version,
                updated_by=updated_by,
                reason=reason,
            )
        return self.backend.write(
            namespace,
            name,
            key,
            value,
            expected_version=expected_version,
            updated_by=updated_by,
            reason=reason,
        )

    async def write_layout(self, layout: Layout, expected_version: int | None) -> int:
        if self.use_async:
            return await self.backend.awrite_layout(NS, NAME, KEY, layout, expected_version=expected_version)
        return self.backend.write_layout(NS, NAME, KEY, layout, expected_version=expected_version)

    async def delete(
        self, expected_version: int | None = None, namespace: str = NS, name: str = NAME, key: str = KEY
    ) -> bool:
        if self.use_async:
            return await self.backend.adelete(namespace, name, key, expected_version=expected_version)
        return self.backend.delete(namespace, name, key, expected_version=expected_version)

    async def list(self, namespace: str | None = None) -> Sequence[StateRecord]:
        if self.use_async:
            return await self.backend.alist(namespace)
        return self.backend.list(namespace)


@pytest.fixture(params=["sync", "async"])
def store(request: pytest.FixtureRequest, backend: DualBackend) -> Store:
    return Store(backend, use_async=request.param == "async")


def _address(record: StateRecord) -> tuple[str, str, str]:
    return (record.namespace, record.name, record.key)


def _layout(keys: int, width: int) -> Layout:
    """A document whose ``seen`` holds ``keys`` keys of ``width`` characters, in runs of 100."""
    entries = [json.dumps(f"{i:0{width}d}") + ":null" for i in range(keys)]
    runs = [",".join(entries[i : i + 100]) for i in range(0, keys, 100)]
    return Layout('{"cursor":1,"seen":{', tuple((part_id(run), run) for run in runs), "}}")


async def test_a_layout_reads_back_as_its_whole_text(store: Store) -> None:
    small, other = _layout(3, 4), _layout(5, 4)
    assert await store.write_layout(small, expected_version=None) == 1
    record = await store.read()
    assert record is not None and (record.value, record.version) == (small.text(), 1)
    assert json.loads(record.value)["seen"] == {"0000": None, "0001": None, "0002": None}
    with pytest.raises(StateConflictError):
        await store.write_layout(other, expected_version=None)
    assert await store.write('{"n": 1}', expected_version=1) == 2
    assert await store.write_layout(other, expected_version=2) == 3
    record = await store.read()
    assert record is not None and (record.value, record.version) == (other.text(), 3)


@pytest.mark.parametrize("backend", LISTING_STORES, indirect=True)
async def test_a_large_layout_reads_back_whole_and_a_change_keeps_the_rest(store: Store) -> None:
    first = _layout(2_000, 60)  # about 130 KB, in 20 parts
    changed = Layout(first.before, (*first.parts[:-1], (part_id('"x":null'), '"x":null')), first.after)
    assert await store.write_layout(first, expected_version=None) == 1
    assert await store.write_layout(changed, expected_version=1) == 2
    records = await store.list(NS)
    assert [(r.value, r.version) for r in records] == [(changed.text(), 2)]
    assert len(json.loads(records[0].value)["seen"]) == 1_901
    with pytest.raises(StateConflictError):
        await store.write_layout(first, expected_version=1)
    record = await store.read()
    assert record is not None and record.value == changed.text()


def test_implements_both_protocols(backend: DualBackend) -> None:
    assert isinstance(backend, StateBackend)
    assert isinstance(backend, AsyncStateBackend)
    assert backend.description


async def test_read_missing_returns_none(store: Store) -> None:
    assert await store.read() is None


@pytest.mark.parametrize("backend", LISTING_STORES, indirect=True)
async def test_list_of_an_empty_store(store: Store) -> None:
    assert await store.list() == []
    assert await store.list(NS) == []


async def test_create_then_read(store: Store) -> None:
    assert await store.write('{"n": 1}', expected_version=None) == 1

    record = await store.read()
    assert record is not None
    assert (record.namespace, record.name, record.key) == (NS, NAME, KEY)
    assert (record.value, record.version) == ('{"n": 1}', 1)


async def test_update_with_the_read_version_increments_it(store: Store) -> None:
    await store.write("a", expected_version=None)
    assert await store.write("b", expected_version=1) == 2
    assert await store.write("c", expected_version=2) == 3

    record = await store.read()
    assert record is not None
    assert (record.value, record.version) == ("c", 3)


async def test_keys_names_and_namespaces_are_independent(store: Store) -> None:
    await store.write("a", expected_version=None)
    await store.write("b", expected_version=1)
    assert await store.write("x", expected_version=None, key="other") == 1
    assert await store.write("y", expected_version=None, name="other") == 1
    assert await store.write("z", expected_version=None, namespace="other") == 1

    record = await store.read()
    assert record is not None and record.value == "b"


@pytest.mark.parametrize(("stored", "expected"), [(2, 1), (2, 3), (1, None)])
async def test_conflict_when_the_stored_version_differs(
    store: Store, stored: int, expected: int | None
) -> None:
    for version in range(stored):
        await store.write(f"v{version + 1}", expected_version=version or None)

    with pytest.raises(StateConflictError) as caught:
        await store.write("lost", expected_version=expected)

    err = caught.value
    assert (err.namespace, err.name, err.key) == (NS, NAME, KEY)
    assert (err.expected_version, err.actual_version) == (expected, stored)
    assert err.backend == store.backend.description
    assert f"{NS}/{NAME}" in str(err)
    record = await store.read()
    assert record is not None and (record.value, record.version) == (f"v{stored}", stored)


async def test_conflict_when_updating_missing_state(store: Store) -> None:
    with pytest.raises(StateConflictError) as caught:
        await store.write("lost", expected_version=1)

    assert (caught.value.expected_version, caught.value.actual_version) == (1, None)
    assert await store.read() is None


async def test_delete(store: Store) -> None:
    await store.write("a", expected_version=None)
    await store.write("b", expected_version=1)

    assert await store.delete() is True
    assert await store.read() is None
    assert await store.delete() is False
    # Versions restart: the next writer expects "nothing stored".
    assert await store.write("c", expected_version=None) == 1


async def test_delete_compare_and_set(store: Store) -> None:
    await store.write("a", expected_version=None)
    await store.write("b", expected_version=1)

    with pytest.raises(StateConflictError) as caught:
        await store.delete(expected_version=1)
    assert (caught.value.expected_version, caught.value.actual_version) == (1, 2)
    assert await store.read() is not None

    assert await store.delete(expected_version=2) is True
    assert await store.read() is None
    with pytest.raises(StateConflictError) as caught:
        await store.delete(expected_version=2)
    assert (caught.value.expected_version, caught.value.actual_version) == (2, None)


@pytest.mark.parametrize("backend", LISTING_STORES, indirect=True)
async def test_list_is_ordered_by_code_point_and_filters_by_namespace(store: Store) -> None:
    # Mixed case: code-point order ("B" < "a") differs from most collations ("a" < "B").
    addresses = [
        ("ns2", "a", "k"),
        ("ns1", "b", "k"),
        ("NS", "z", "k"),
        ("ns1", "B", "k"),
        ("ns1", "a", "k2"),
        ("ns1", "a", "k1"),
        ("ns1", "A", "k"),
    ]
    for namespace, name, key in addresses:
        await store.write("{}", expected_version=None, namespace=namespace, name=name, key=key)

    assert [_address(r) for r in await store.list()] == sorted(addresses)
    assert [_address(r) for r in await store.list("ns1")] == sorted(a for a in addresses if a[0] == "ns1")
    assert await store.list("ns3") == []


async def test_unicode_round_trips(store: Store) -> None:
    namespace, name, key = "données", "水位-🚀/x", "ключ"
    for value in (
        json.dumps({"emoji": "🚀" * 100, "text": "é" * 2_000, "quote": "'\"\\"}, ensure_ascii=False),
        json.dumps({"emoji": "🚀", "quote": "'\"\\"}, ensure_ascii=False, separators=(",", ":")),
        '"just a JSON string"',
        "not JSON at all: é",
    ):
        await store.delete(namespace=namespace, name=name, key=key)
        await store.write(value, expected_version=None, namespace=namespace, name=name, key=key)
        record = await store.read(namespace, name, key)
        assert record is not None and record.value == value
        assert (record.namespace, record.name, record.key) == (namespace, name, key)


@pytest.mark.parametrize("backend", LISTING_STORES, indirect=True)
async def test_unicode_and_large_values_round_trip(store: Store) -> None:
    namespace, name, key = "données", "水位-🚀", "ключ"
    value = json.dumps({"emoji": "🚀" * 1000, "text": "é" * 200_000, "quote": "'\"\\"}, ensure_ascii=False)

    await store.write(value, expected_version=None, namespace=namespace, name=name, key=key)

    record = await store.read(namespace, name, key)
    assert record is not None and record.value == value
    listed = await store.list(namespace)
    assert [(r.name, r.key, r.value) for r in listed] == [(name, key, value)]


async def test_updated_by_defaults_to_this_process_and_can_be_given(store: Store) -> None:
    await store.write("a", expected_version=None)
    record = await store.read()
    assert record is not None and record.updated_by == default_writer()

    await store.write("b", expected_version=1, updated_by="cli:alice")
    record = await store.read()
    assert record is not None and record.updated_by == "cli:alice"

    await store.write("c", expected_version=2)
    record = await store.read()
    assert record is not None and record.updated_by == default_writer()


async def test_a_reason_is_kept_with_its_version_only(store: Store) -> None:
    await store.write("a", expected_version=None)
    record = await store.read()
    assert record is not None and record.reason is None

    await store.write(
        "b", expected_version=1, updated_by="stateful set by alice@ops-1", reason="replay Monday"
    )
    record = await store.read()
    assert record is not None and (record.updated_by, record.reason) == (
        "stateful set by alice@ops-1",
        "replay Monday",
    )

    # The trigger's next save gives none: it does not inherit the edit's.
    await store.write("c", expected_version=2)
    record = await store.read()
    assert record is not None and (record.value, record.reason) == ("c", None)


async def test_a_lost_compare_and_set_names_the_edit_that_won(store: Store) -> None:
    await store.write("a", expected_version=None)
    await store.write(
        "b", expected_version=1, updated_by="stateful set by alice@ops-1", reason="skip batch 7"
    )

    with pytest.raises(StateConflictError) as caught:
        await store.write("stale", expected_version=1)

    err = caught.value
    winner = await store.read()
    assert winner is not None
    assert (err.actual_version, err.actual_by, err.actual_reason) == (
        2,
        "stateful set by alice@ops-1",
        "skip batch 7",
    )
    assert err.actual_at == winner.updated_at
    assert err.edited
    message = str(err)
    assert "found version 2, written " in message
    assert "by stateful set by alice@ops-1 (reason: 'skip batch 7')" in message
    assert "An operator edited it" in message and "continues from version 2" in message


async def test_a_conflict_with_another_writer_is_not_called_an_edit(store: Store) -> None:
    await store.write("a", expected_version=None, updated_by="triggerer-2:77")

    with pytest.raises(StateConflictError) as caught:
        await store.write("b", expected_version=None)

    assert caught.value.actual_by == "triggerer-2:77" and not caught.value.edited
    assert "by triggerer-2:77." in str(caught.value)
    assert "make sure only one trigger or sensor owns" in str(caught.value)


async def test_updated_at_is_timezone_aware_utc(store: Store) -> None:
    await store.write("a", expected_version=None)
    await store.write("b", expected_version=1)

    record = await store.read()
    assert record is not None
    assert record.updated_at.tzinfo is not None
    assert record.updated_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("backend", LISTING_STORES, indirect=True)
async def test_list_shows_what_read_shows(store: Store) -> None:
    await store.write("a", expected_version=None)
    await store.write("b", expected_version=1, updated_by="cli:alice")

    record = await store.read()
    (listed,) = await store.list()
    assert listed == record
    assert listed.updated_at.utcoffset() == timedelta(0)


async def test_conflict_is_a_stateful_error(store: Store) -> None:
    await store.write("a", expected_version=None)
    with pytest.raises(StatefulError):
        await store.write("b", expected_version=None)


# A random sequence of writes and deletes, each with the right, a stale or no expected version,
# must behave exactly like a dict of (value, version).
_OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["write", "delete"]),
        st.sampled_from(["a", "b", "c"]),  # which key
        st.sampled_from(["right", "stale", "none"]),  # which expected version
    ),
    max_size=25,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=_OPERATIONS)
def test_behaves_like_a_versioned_dict(backend: DualBackend, operations: list[tuple[str, str, str]]) -> None:
    namespace = f"model-{uuid.uuid4().hex}"  # the store is shared by all examples
    model: dict[str, tuple[str, int]] = {}
    for step, (operation, key, choice) in enumerate(operations):
        stored = model.get(key)
        current = None if stored is None else stored[1]
        expected = {"right": current, "stale": (current or 0) + 7, "none": None}[choice]
        should_conflict = operation == "write" or expected is not None
        conflicts = should_conflict and expected != current
        try:
            if operation == "write":
                version = backend.write(namespace, NAME, key, f"v{step}", expected_version=expected)
                assert not conflicts and version == (current or 0) + 1
                model[key] = (f"v{step}", version)
            else:
                existed = backend.delete(namespace, NAME, key, expected_version=expected)
                assert not conflicts and existed is (stored is not None)
                model.pop(key, None)
        except StateConflictError as exc:
            assert conflicts and (exc.expected_version, exc.actual_version) == (expected, current)

    read = {}
    for key in ("a", "b", "c"):
        record = backend.read(namespace, NAME, key)
        if record is not None:
            read[key] = (record.value, record.version)
    assert read == model
    if not isinstance(backend, NativeBackend):  # it cannot list (see the module docstring)
        listed = {r.key: (r.value, r.version) for r in backend.list(namespace)}
        assert listed == model
