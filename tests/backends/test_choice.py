"""The store rule (stateful.backends.choice.plan) as a truth table: every input, its answer."""

from __future__ import annotations

import pytest

from stateful.backends.choice import BACKEND_CHOICES, BackendSetting, Given, plan
from stateful.errors import StoreConfigError

# (given, setting, has an asset state store) -> (store, also read), or None: refused.
TABLE: dict[tuple[Given, BackendSetting, bool], tuple[str, str | None] | None] = {
    # 1. a store instance given to @stateful: used as it is, whatever the option and the scope.
    **{("store", setting, scope): ("given", None) for setting in BACKEND_CHOICES for scope in (True, False)},
    # 1. NativeBackend() given: the asset state store, checked against the SQL store; none: refused.
    **{("native", setting, True): ("native", "sql") for setting in BACKEND_CHOICES},
    **{("native", setting, False): None for setting in BACKEND_CHOICES},
    # 2. the option.
    ("nothing", "native", True): ("native", "sql"),
    ("nothing", "native", False): None,
    ("nothing", "sql", True): ("sql", "native"),
    ("nothing", "sql", False): ("sql", None),
    # 3. auto: the asset state store where there is one.
    ("nothing", "auto", True): ("native", "sql"),
    ("nothing", "auto", False): ("sql", None),
}


def test_the_table_covers_every_input() -> None:
    assert len(TABLE) == 3 * len(BACKEND_CHOICES) * 2


@pytest.mark.parametrize(("given", "setting", "scope"), sorted(TABLE))
def test_the_rule(given: Given, setting: BackendSetting, scope: bool) -> None:
    expected = TABLE[(given, setting, scope)]
    if expected is None:
        with pytest.raises(StoreConfigError, match="has no asset state store") as info:
            plan(given, setting, has_asset_store=scope, what="Sensor")
        assert "Sensor" in str(info.value) and "backend=SqlBackend(...)" in str(info.value)
        return
    decided = plan(given, setting, has_asset_store=scope, what="Sensor")
    assert (decided.store, decided.check) == expected
    assert decided.reason  # always says why, for the INFO line


def test_the_reasons_name_the_rule() -> None:
    assert plan("store", "auto", has_asset_store=True, what="T").reason == "backend= given to @stateful"
    assert plan("nothing", "sql", has_asset_store=True, what="T").reason == "[stateful] backend is sql"
    auto = plan("nothing", "auto", has_asset_store=False, what="T").reason
    assert auto == "[stateful] backend is auto and T has no asset state store"
