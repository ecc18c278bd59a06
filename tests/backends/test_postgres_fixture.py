"""The PostgreSQL fixture must fail, not skip, in CI when the server binaries are missing."""

from __future__ import annotations

import pytest

from tests._postgres import postgres_required


@pytest.mark.parametrize(
    ("ci", "require", "expected"),
    [
        (None, None, False),
        ("", "0", False),
        ("false", None, False),
        ("true", None, True),
        ("1", None, True),
        (None, "1", True),
    ],
)
def test_postgres_required(
    monkeypatch: pytest.MonkeyPatch, ci: str | None, require: str | None, expected: bool
) -> None:
    for name, value in (("CI", ci), ("STATEFUL_REQUIRE_POSTGRES", require)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert postgres_required() is expected
