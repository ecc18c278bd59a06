"""Measured figures of the end-to-end suite, printed in the run's terminal summary.

A test records a figure with the ``figures`` fixture; the figure travels in its test report's
``user_properties``, so the summary shows it also when the test ran in a pytest-xdist worker
(``make test`` runs the suite with ``-n``): the summary is written by the controlling process,
which sees the workers' reports, not their memory.

Example, in a test::

    def test_burst(figures: Figures) -> None:
        figures.append("[sql store] burst: 2000 files, 0 lost")
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

__all__ = ["FIGURE", "Figures", "figures", "pytest_terminal_summary", "reported_figures"]

FIGURE = "stateful-figure"
SECTION = "stateful end-to-end figures"


class Figures:
    """What the ``figures`` fixture gives a test: ``append``/``extend`` record figures (lines)."""

    def __init__(self, item: pytest.Item) -> None:
        self._item = item

    def append(self, line: str) -> None:
        self._item.user_properties.append((FIGURE, line))

    def extend(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.append(line)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    """Measured figures; printed at the end of the run (they go into docs/running-in-airflow.md)."""
    return Figures(request.node)


def reported_figures(terminalreporter: pytest.TerminalReporter) -> list[str]:
    """The figures in the reports of the tests' call phase (passed or failed), in arrival order."""
    return [
        str(value)
        for outcome in terminalreporter.stats.values()
        for report in outcome
        if isinstance(report, pytest.TestReport) and report.when == "call"
        for name, value in report.user_properties
        if name == FIGURE
    ]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = reported_figures(terminalreporter)
    if lines:
        terminalreporter.section(SECTION)
        for line in lines:
            terminalreporter.write_line(line)
