"""The Watermarks page in a real headless Chromium, on a real ``airflow api-server`` with the plugin.

A user signs in on Airflow's own login page, opens the page, finds a watermark of the SQL store and
one of an asset's native store, opens one, rewinds it with a reason and sees the new version in its
history; a stale version is refused with a readable message. The read-only user sees no control
that changes anything.

The browser is Debian's ``chromium`` with its ``chromedriver`` (``apt-get install chromium
chromium-driver``; ``.ci/run`` installs them), driven by Selenium. Without them the tests are
skipped, except in CI (``CI`` set, or ``STATEFUL_REQUIRE_E2E=1``), where they fail.

With ``STATEFUL_SCREENSHOTS=DIR`` (``make screenshots``: ``DIR`` is ``docs/images``) the tests
save the documentation's pictures of the page there (``ui-*.png``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest

from stateful.types import Watermark
from tests.plugin.conftest import PluginServer, User

# One group: under pytest-xdist (--dist loadgroup) the API and browser tests share one worker,
# so one api-server (plugin_server, per session) serves them all.
pytestmark = [
    pytest.mark.airflow_db,
    pytest.mark.airflow_min("3.3", reason="AIP-103 asset state store"),
    pytest.mark.xdist_group("plugin-api-server"),
]

T = TypeVar("T")
#: Where ``make screenshots`` wants the pictures (unset: none are taken).
SCREENSHOTS = os.environ.get("STATEFUL_SCREENSHOTS", "")
WAIT = 30.0  # seconds for the page to show what the test waits for (a shared, busy machine)
#: Debian's flags for a headless Chromium that reaches nothing but the server under test.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,900",
)


def _browser_required() -> bool:
    """Whether a missing browser must fail the run (CI) instead of skipping."""
    if os.environ.get("STATEFUL_REQUIRE_E2E", "") not in {"", "0"}:
        return True
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def chromium() -> tuple[str, str]:
    """The paths of ``chromium`` and ``chromedriver``; skip (fail in CI) without them or Selenium."""
    problems = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        problems.append("the Python package selenium (the `test` extra)")
    binary = _find("chromium", "chromium-browser")
    driver = _find("chromedriver")
    if binary is None:
        problems.append("chromium")
    if driver is None:
        problems.append("chromedriver")
    if problems or binary is None or driver is None:
        message = (
            f"the browser test needs {' and '.join(problems)}, not found: "
            "`apt-get install chromium chromium-driver` (Debian), then `make test`"
        )
        if _browser_required():
            pytest.fail(f"{message}; required here because CI or STATEFUL_REQUIRE_E2E is set")
        pytest.skip(message)
    return binary, driver


class Page:
    """A headless Chromium on the plugin's server, with the waits the page's tests need."""

    def __init__(self, driver: Any, server: PluginServer) -> None:
        self.driver = driver
        self.server = server

    def wait(self, condition: Callable[[Any], T], what: str) -> T:
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            result: T = WebDriverWait(self.driver, WAIT).until(condition)
        except TimeoutException:
            raise AssertionError(
                f"the page did not show {what} within {WAIT:.0f} s; it is at {self.driver.current_url}; "
                f"its text:\n{self.text()}\nits console:\n{self.console()}"
            ) from None
        return result

    def by_id(self, element_id: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.ID, element_id)

    def text(self) -> str:
        from selenium.webdriver.common.by import By

        text: str = self.driver.find_element(By.TAG_NAME, "body").text
        return text

    def console(self) -> str:
        try:
            return "\n".join(entry["message"] for entry in self.driver.get_log("browser"))
        except Exception as exc:  # the log is a Chromium extension; never hide the real failure
            return f"(no console log: {exc})"

    def sign_in(self, user: User) -> None:
        """Airflow's login page, as a person uses it; it sends the browser on to the Watermarks page."""
        from selenium.webdriver.common.by import By

        self.driver.delete_all_cookies()
        self.driver.get(f"{self.server.url}/auth/login?next={quote(self.server.page_url, safe='')}")
        username = self.wait(lambda d: d.find_element(By.NAME, "username"), "Airflow's login form")
        username.send_keys(user.username)
        self.driver.find_element(By.NAME, "password").send_keys(user.password)
        self.driver.find_element(By.XPATH, "//button[@type='submit' and normalize-space()='Sign in']").click()
        page_url = self.server.page_url
        self.wait(lambda d: d.current_url.startswith(page_url), "the Watermarks page after signing in")
        self.wait(lambda d: user.username in self.by_id("who").text, f"'Signed in as {user.username}'")

    def in_airflow_ui(self) -> None:
        """Airflow's own UI shows the page in its frame (Browse > Watermarks); then the page alone."""
        from selenium.webdriver.common.by import By

        self.driver.get(f"{self.server.url}/plugin/watermarks")
        frame = self.wait(
            lambda d: d.find_element(By.CSS_SELECTOR, "iframe[src*='/stateful/']"), "the page in Airflow's UI"
        )
        self.driver.switch_to.frame(frame)
        try:
            self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#rows tr"), "the table inside Airflow's UI")
        finally:
            self.driver.switch_to.default_content()
        self.driver.get(self.server.page_url)
        self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#rows tr"), "the table")

    def rows(self) -> dict[str, dict[str, str]]:
        """The visible rows by name (``NAME · PARTITION`` for a partition), each cell by its column."""
        script = """
            const keys = [...document.querySelectorAll('#watermarks thead th')].map((th) => th.dataset.key);
            const cells = (tr) => [...tr.children].map((cell, i) => [keys[i], cell.innerText.trim()]);
            return [...document.querySelectorAll('#rows tr')].map((tr) => Object.fromEntries(cells(tr)));
        """
        rows = self.driver.execute_script(script)
        return {row["name"] + (f" · {row['partition']}" if row["partition"] else ""): row for row in rows}

    def filter(self, text: str) -> None:
        box = self.by_id("filter")
        box.clear()
        box.send_keys(text)

    def open(self, name: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.LINK_TEXT, name).click()
        self.wait(lambda d: name in self.by_id("detail-title").text, f"the detail of {name!r}")
        self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#history li.version"), "its history")

    def versions(self) -> list[int]:
        """The history's versions, newest first (read in one go: the page redraws it after a change)."""
        items = "document.querySelectorAll('#history li.version')"
        script = f"return [...{items}].map((li) => li.dataset.version);"
        return [int(version) for version in self.driver.execute_script(script)]

    def history_entry(self, version: int) -> str:
        script = "const li = document.querySelector(`#history li[data-version='${arguments[0]}']`);"
        text: str = self.driver.execute_script(script + " return li ? li.innerText : '';", version)
        return text

    def screenshot(self, name: str, element: Any = None) -> None:
        """``ui-<name>.png`` in ``STATEFUL_SCREENSHOTS`` when it is set (``make screenshots``)."""
        if not SCREENSHOTS:
            return
        path = Path(SCREENSHOTS) / f"ui-{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if element is None:
            self.driver.save_screenshot(str(path))
        else:
            element.screenshot(str(path))


@pytest.fixture
def page(chromium: tuple[str, str], plugin_server: PluginServer) -> Iterator[Page]:
    """A fresh browser (its own profile: no cookie kept from another test) on the plugin's server."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with tempfile.TemporaryDirectory(prefix="stateful-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            yield Page(driver, plugin_server)
        finally:
            driver.quit()


def _watermark(value: Watermark[Any], *keys: str) -> Watermark[Any]:
    """``value`` with ``keys`` seen at its boundary, as a trigger records them."""
    for key in keys:
        value.advance(key=key, timestamp=value.timestamp)
    return value


def _namespace(readable: str) -> str:
    """The test's own namespace on the session's shared server (a readable one for the pictures)."""
    return readable if SCREENSHOTS else f"{readable}-{uuid.uuid4().hex[:8]}"


def test_an_admin_finds_opens_and_rewinds_a_watermark(page: Page, plugin_server: PluginServer) -> None:
    ns = _namespace("shop")
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=3)
    plugin_server.sql_watermark(
        ns,
        "db.public.orders",
        Watermark[int](cursor=41000, timestamp=start),
        _watermark(Watermark[int](cursor=41870, timestamp=start + timedelta(hours=1)), "order-41870"),
        reason="nightly load",
    )
    asset = plugin_server.native_watermark(
        ns,
        "/data/landing/*.csv",
        _watermark(Watermark[str](cursor="2026-01-05.csv", timestamp=start), "2026-01-05.csv"),
    )

    page.sign_in(plugin_server.admin)
    page.in_airflow_ui()
    page.filter(ns)
    page.wait(lambda d: len(page.rows()) == 2, f"the two watermarks of {ns!r}")
    rows = page.rows()

    orders, landing = rows["db.public.orders"], rows["/data/landing/*.csv"]
    assert (orders["namespace"], orders["cursor"], orders["seen"]) == (ns, "41870", "1")
    assert orders["version"] == "2"
    assert (orders["store_label"], landing["store_label"]) == ("SQL store", f"asset {asset}")
    assert "read-only" not in page.by_id("who").text
    page.screenshot("list")

    # Sorting by a column, both ways.
    from selenium.webdriver.common.by import By

    sort_by_cursor = page.driver.find_element(By.CSS_SELECTOR, 'th[data-key="cursor"] button')
    sort_by_cursor.click()
    assert list(page.rows()) == ["/data/landing/*.csv", "db.public.orders"]  # "2026…" < "41870"
    sort_by_cursor.click()
    assert list(page.rows()) == ["db.public.orders", "/data/landing/*.csv"]
    assert sort_by_cursor.find_element(By.XPATH, "..").get_attribute("aria-sort") == "descending"

    page.open("db.public.orders")
    assert page.versions() == [2, 1]
    assert '"cursor": 41870' in page.by_id("document").text
    assert "nightly load" in page.history_entry(2)
    assert "41000" in page.history_entry(2) and "41870" in page.history_entry(2)  # the diff: before, after
    page.screenshot("detail")

    # Rewind to version 1, with a reason and after confirming.
    page.by_id("rewind-to").send_keys("version 1")
    page.by_id("rewind-reason").send_keys("replay the orders of the last hour")
    page.by_id("rewind-button").click()
    dialog = page.wait(lambda d: (e := page.by_id("confirm")).is_displayed() and e, "the confirmation dialog")
    assert "version 1" in dialog.text and "replay the orders of the last hour" in dialog.text
    page.screenshot("confirm")
    page.by_id("confirm-ok").click()

    page.wait(lambda d: 3 in page.versions(), "version 3 in the history")
    assert "is now at version 3" in page.by_id("action-done").text
    assert "replay the orders of the last hour" in page.history_entry(3)
    assert "admin" in page.history_entry(3)
    assert '"cursor": 41000' in page.by_id("document").text
    page.screenshot("history", page.by_id("history"))

    # Someone else saves meanwhile: the page's version is stale, and the server refuses (409).
    plugin_server.sql_watermark(ns, "db.public.orders", Watermark[int](cursor=42000, timestamp=start))
    page.by_id("rewind-to").send_keys("version 2")
    page.by_id("rewind-reason").send_keys("try again")
    page.by_id("rewind-button").click()
    page.wait(lambda d: page.by_id("confirm").is_displayed(), "the confirmation dialog")
    page.by_id("confirm-ok").click()
    error = page.wait(lambda d: (e := page.by_id("action-error")).is_displayed() and e, "the conflict")
    assert "409" in error.text, error.text
    page.wait(lambda d: 4 in page.versions(), "the current version (4) after the conflict")
    assert 5 not in page.versions()

    # Cancelling the dialog changes nothing.
    page.by_id("rewind-button").click()
    page.wait(lambda d: page.by_id("confirm").is_displayed(), "the confirmation dialog")
    page.by_id("confirm-cancel").click()
    page.wait(lambda d: not page.by_id("confirm").is_displayed(), "the dialog closed")
    assert max(page.versions()) == 4

    # No reason: the page asks for one and sends nothing.
    page.by_id("rewind-reason").clear()
    page.by_id("rewind-button").click()
    assert "A reason is required" in page.by_id("action-error").text
    assert not page.by_id("confirm").is_displayed()

    # Set: a cursor the model refuses (its cursor is an int) is refused by the server (422) ...
    page.by_id("set-cursor").send_keys("not a number")
    page.by_id("set-reason").send_keys("skip the broken batch")
    page.by_id("set-button").click()
    dialog = page.wait(lambda d: (e := page.by_id("confirm")).is_displayed() and e, "the confirmation dialog")
    assert '"cursor": "not a number"' in dialog.text
    page.by_id("confirm-ok").click()
    error = page.wait(lambda d: (e := page.by_id("action-error")).is_displayed() and e, "the refusal")
    assert "Not accepted (422)" in error.text, error.text
    assert max(page.versions()) == 4
    # ... and one it takes is saved as a new version.
    page.by_id("set-cursor").clear()
    page.by_id("set-cursor").send_keys("42500")
    page.by_id("set-button").click()
    page.wait(lambda d: page.by_id("confirm").is_displayed(), "the confirmation dialog")
    page.by_id("confirm-ok").click()
    page.wait(lambda d: 5 in page.versions(), "version 5 in the history")
    assert '"cursor": 42500' in page.by_id("document").text
    assert "skip the broken batch" in page.history_entry(5)


def test_the_read_only_user_sees_no_control_that_changes_anything(
    page: Page, plugin_server: PluginServer
) -> None:
    ns = _namespace("warehouse")
    plugin_server.sql_watermark(ns, "events", Watermark[int](cursor=1), Watermark[int](cursor=2))

    # Signed out: the page says so and links to Airflow's sign-in.
    page.driver.get(plugin_server.page_url)
    banner = page.wait(lambda d: (e := page.by_id("banner")).is_displayed() and e, "the signed-out message")
    assert "Not signed in (401)" in banner.text
    from selenium.webdriver.common.by import By

    link = banner.find_element(By.LINK_TEXT, "Sign in to Airflow")
    assert link.get_attribute("href") == f"{plugin_server.url}/"

    page.sign_in(plugin_server.viewer)
    assert "read-only" in page.by_id("who").text
    page.filter(ns)
    page.wait(lambda d: "events" in page.rows(), f"the watermark of {ns!r}")
    page.open("events")

    assert page.versions() == [2, 1]
    assert page.by_id("read-only").is_displayed()
    for control in ("actions", "rewind-button", "set-button", "rewind-reason"):
        assert not page.by_id(control).is_displayed(), control
    assert "Rewind" not in page.text() and "Set…" not in page.text()
    page.screenshot("read-only")


def test_each_partition_of_a_keyed_watermark_is_a_row_set_alone(
    page: Page, plugin_server: PluginServer
) -> None:
    from selenium.webdriver.common.by import By

    ns = _namespace("orders")
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    plugin_server.sql_partitions(
        ns,
        "2026",
        {
            "eu": [Watermark[int](cursor=c, timestamp=start) for c in (41000, 41870)],
            "us": [Watermark[int](cursor=900, timestamp=start - timedelta(hours=3))],
        },
    )
    # More rows than the page asks for at a time (500): the server filters, sorts and pages them.
    bulk = f"bulk-{uuid.uuid4().hex[:8]}"
    tenants = {f"t{n}": [Watermark[int](cursor=n)] for n in range(1, 521)}
    plugin_server.sql_partitions(bulk, "tenants", tenants)

    page.sign_in(plugin_server.admin)
    page.wait(lambda d: page.by_id("more").is_displayed(), "'Show more' under the first 500 rows")
    assert "500 of" in page.by_id("count").text and "shown" in page.by_id("count").text
    page.filter(ns)
    page.wait(lambda d: set(page.rows()) == {"2026 · eu", "2026 · us"}, f"the two partitions of {ns!r}")
    rows = page.rows()
    assert (rows["2026 · eu"]["cursor"], rows["2026 · eu"]["version"]) == ("41870", "2")
    assert (rows["2026 · us"]["cursor"], rows["2026 · us"]["version"]) == ("900", "1")
    assert page.driver.find_element(By.CSS_SELECTOR, 'th[data-key="partition"]').is_displayed()
    page.screenshot("partitions")

    eu_link = "//tr[td[contains(@class, 'partition') and normalize-space()='eu']]//a"
    page.driver.find_element(By.XPATH, eu_link).click()
    page.wait(lambda d: "partition eu" in page.by_id("detail-title").text, "the detail of partition eu")
    page.wait(lambda d: page.versions() == [2, 1], "its history")
    assert f"{ns} / 2026 · partition eu" == page.by_id("detail-title").text
    assert page.by_id("partition-note").is_displayed()

    page.by_id("set-cursor").send_keys("41000")
    page.by_id("set-reason").send_keys("replay eu")
    page.by_id("set-button").click()
    dialog = page.wait(lambda d: (e := page.by_id("confirm")).is_displayed() and e, "the confirmation dialog")
    assert "Set this partition?" in dialog.text
    assert f"The other partitions of {ns} / 2026 are not changed." in dialog.text
    page.by_id("confirm-ok").click()
    page.wait(lambda d: 3 in page.versions(), "version 3 in the history")
    assert f"{ns} / 2026 · partition eu is now at version 3" in page.by_id("action-done").text

    # "All its partitions": back to the list, filtered to this watermark; the other one unchanged.
    page.by_id("partition-all").click()
    page.wait(lambda d: page.rows().get("2026 · eu", {}).get("version") == "3", "eu at version 3 in the list")
    assert page.by_id("filter").get_attribute("value") == f"{ns}/2026"
    rows = page.rows()
    assert set(rows) == {"2026 · eu", "2026 · us"}
    assert (rows["2026 · eu"]["cursor"], rows["2026 · us"]["cursor"], rows["2026 · us"]["version"]) == (
        "41000",
        "900",
        "1",
    )

    # The server's filter (on the document key too) and order: t52 before t520.
    page.filter("watermark[t52")
    page.wait(lambda d: "tenants · t52" in page.rows(), "the partitions t52 and t520 of 'tenants'")
    assert list(page.rows()) == ["tenants · t52", "tenants · t520"]
    assert page.by_id("count").text.startswith("2 of ")  # 2 of every watermark stored
    assert not page.by_id("more").is_displayed()

    # Unfiltered, "Show more" asks for 500 rows more.
    page.driver.get(plugin_server.page_url)
    page.wait(lambda d: page.by_id("more").is_displayed(), "'Show more' under the first 500 rows")
    count = "return document.querySelectorAll('#rows tr').length;"
    assert page.driver.execute_script(count) == 500
    page.by_id("more").click()
    page.wait(lambda d: d.execute_script(count) > 500, "more than 500 rows")
