"""Clear answers to mistakes: one line (or one JSON object) and the documented exit status, never
a traceback; addresses that cannot be confused; suggested commands that work when pasted."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stateful._address import display_address
from stateful.types import Watermark
from tests.cli.conftest import WM, Cli

NUMBERS = "tests.triggers:Numbers"
NAMED = "tests.triggers:Named"
# Invalid for every model: the timestamp is not a date-time.
INVALID = '{"cursor":1,"schema_version":1,"seen":{},"timestamp":"yesterday"}'


def named(label: str, total: int = 1) -> list[str]:
    return [NAMED, "--kwargs", json.dumps({"label": label, "total": total})]


def one_json_error(stderr: str) -> dict[str, object]:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    error: dict[str, object] = json.loads(lines[0])
    return error


# -- stateful run: validation before "loaded", a trigger that raises -------------------------------


def test_run_refuses_an_invalid_state_before_saying_it_was_loaded(cli: Cli) -> None:
    cli.store().write("numbers", "counter", WM, INVALID, expected_version=None)

    text = cli("run", NUMBERS, "--kwargs", '{"total": 3}')
    as_json = cli("run", NUMBERS, "--kwargs", '{"total": 3}', "--json")

    assert text.returncode == 1 and "loaded" not in text.stdout
    assert "does not validate as" in text.stderr and "Traceback" not in text.stderr
    assert as_json.returncode == 1
    assert [line["type"] for line in as_json.lines()] == ["start"]
    error = one_json_error(as_json.stderr)
    assert error["exit_code"] == 1 and "does not validate as" in str(error["error"])


def test_a_trigger_that_raises_is_one_json_error_object_with_json(cli: Cli) -> None:
    result = cli("run", NUMBERS, "--kwargs", '{"total": 5, "fail_at": 3}', "--json")

    assert result.returncode == 1
    assert [line["type"] for line in result.lines()] == [
        "start",
        "loaded",
        "event",
        "saved",
        "event",
        "saved",
    ]
    error = one_json_error(result.stderr)
    assert error["exit_code"] == 1
    message = str(error["error"])
    assert message.startswith(
        "the trigger tests.triggers:Numbers raised RuntimeError: the source failed at 3"
    )
    assert "triggers.py:" in message and "Run with -vv for the traceback" in message


def error_line(stderr: str) -> str:
    """The one error line of ``stderr``, beside the lines naming the store (or saying it was created)."""
    lines = [line for line in stderr.splitlines() if not line.startswith(("store: ", "Note: created"))]
    assert len(lines) == 1, stderr
    assert stderr.endswith("\n")
    return lines[0]


def test_a_trigger_that_raises_is_one_line_without_json(cli: Cli) -> None:
    result = cli("run", NUMBERS, "--kwargs", '{"total": 5, "fail_at": 2}')

    assert result.returncode == 1
    assert error_line(result.stderr).startswith("Error: the trigger tests.triggers:Numbers")
    assert "Traceback" not in result.stderr


def test_the_traceback_of_a_raising_trigger_is_in_the_debug_log(cli: Cli) -> None:
    result = cli("-vv", "run", NUMBERS, "--kwargs", '{"total": 5, "fail_at": 2}')

    assert result.returncode == 1
    assert "Traceback" in result.stderr and "RuntimeError: the source failed at 2" in result.stderr


@pytest.mark.parametrize(
    ("source", "kwargs", "status", "message"),
    [
        ("raise RuntimeError('no config here')\n", "{}", 1, "RuntimeError: no config here"),
        (
            "import stateful_not_installed_anywhere\n",
            "{}",
            1,
            "No module named 'stateful_not_installed_anywhere'",
        ),
        (
            "from tests.triggers import Numbers\n"
            "class Picky(Numbers):\n"
            "    def __init__(self, total: int) -> None:\n"
            "        if total < 0:\n"
            "            raise ValueError('total must be >= 0')\n"
            "        super().__init__(total)\n",
            '{"total": -1}',
            2,
            "ValueError: total must be >= 0",
        ),
    ],
    ids=["raises-at-import", "missing-import-inside", "constructor-refuses"],
)
def test_a_module_or_constructor_that_fails_is_one_line(
    cli: Cli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    kwargs: str,
    status: int,
    message: str,
) -> None:
    module = f"broken_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))

    text = cli("run", f"{module}:Picky", "--kwargs", kwargs)
    as_json = cli("run", f"{module}:Picky", "--kwargs", kwargs, "--json")

    assert text.returncode == status and message in text.stderr
    assert error_line(text.stderr) and "Traceback" not in text.stderr
    assert as_json.returncode == status and as_json.stdout == ""
    error = one_json_error(as_json.stderr)
    assert error["exit_code"] == status and message in str(error["error"])


# -- export into a place it cannot write -------------------------------------------------------------


def test_export_into_a_missing_directory_is_bad_input_and_creates_nothing(cli: Cli, tmp_path: Path) -> None:
    cli.seed("numbers", "counter", Watermark[int](cursor=1))
    target = tmp_path / "no" / "such" / "dir" / "out.jsonl"

    result = cli("export", "--output", str(target))

    assert result.returncode == 2
    assert error_line(result.stderr)
    assert f"the directory '{target.parent}' does not exist" in result.stderr
    assert not (tmp_path / "no").exists()


def test_export_into_a_file_that_cannot_be_written_is_bad_input(cli: Cli) -> None:
    cli.seed("numbers", "counter", Watermark[int](cursor=1))

    result = cli("export", "--output", "/proc/stateful-export.jsonl")  # procfs refuses new files

    assert result.returncode == 2
    assert error_line(result.stderr).startswith(
        "Error: --output '/proc/stateful-export.jsonl': cannot write it"
    )


# -- names with surrounding whitespace; addresses that cannot be confused ----------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["show", " files", "x"],
        ["show", "files", "x "],
        ["history", "files", "\tx"],
        ["list", "--namespace", "files "],
    ],
)
def test_surrounding_whitespace_in_a_namespace_or_name_is_refused(cli: Cli, args: list[str]) -> None:
    result = cli(*args)

    assert result.returncode == 2
    assert "has leading or trailing whitespace" in result.stderr and "did you mean" in result.stderr


def test_addresses_that_differ_print_differently(cli: Cli) -> None:
    cli.seed("a/b", "q", Watermark[int](cursor=1))
    cli.seed("a", "b/q", Watermark[int](cursor=2))

    first = cli("show", "a/b", "q")
    second = cli("show", "a", "b/q")
    missing = cli("history", "a", "b/x")

    assert first.stdout.splitlines()[0] == "'a/b'/q"
    assert second.stdout.splitlines()[0] == "a/'b/q'"
    assert "no watermark a/'b/x'" in missing.stderr


def test_run_prints_the_address_unambiguously(cli: Cli) -> None:
    result = cli("run", *named("in/coming", total=1))

    assert result.returncode == 0, result.stderr
    assert "loaded   files/'in/coming': nothing stored yet" in result.stdout


# -- every suggested command works when pasted into a shell ---------------------------------------


class Shell:
    """Pastes commands into a real POSIX shell, in a directory where a glob would expand."""

    def __init__(self, cli: Cli, cwd: Path) -> None:
        self.cli, self.cwd = cli, cwd
        bin_dir = str(Path(sys.executable).parent)
        self.env = cli.environment()
        self.env["PATH"] = bin_dir + ":" + self.env.get("PATH", "")

    def paste(self, text: str, *extra: str, command: str = "") -> subprocess.CompletedProcess[str]:
        """Run the first ``stateful COMMAND ...`` suggested in ``text``, with ``extra`` arguments."""
        found = re.findall(rf"`(stateful {command}[^`]*)`", text)
        assert found, f"no suggested command in: {text}"
        line = found[0] + "".join(f" {e}" for e in extra)
        return subprocess.run(
            line,
            shell=True,
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture
def names(tmp_path: Path) -> list[str]:
    """A glob that matches a file (so an unquoted paste would expand it) and a name with spaces."""
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "orders-1.csv").touch()
    return [f"{landing}/*.csv", "daily reports"]


def test_the_command_suggested_after_a_change_works_when_pasted(
    cli: Cli, tmp_path: Path, names: list[str]
) -> None:
    shell = Shell(cli, tmp_path)
    for name in names:
        cli.seed("files", name, Watermark[int](cursor=1))
        changed = cli("set", "files", name, "--cursor", "2", "--yes")
        assert changed.returncode == 0, changed.stderr

        pasted = shell.paste(changed.stdout)

        assert pasted.returncode == 0, pasted.stderr
        assert pasted.stdout.splitlines()[0] == display_address("files", name)


def test_the_list_hint_of_a_mistyped_name_works_when_pasted(
    cli: Cli, tmp_path: Path, names: list[str]
) -> None:
    shell = Shell(cli, tmp_path)
    for name in names:
        namespace = f"my {name}"  # a namespace that needs quoting too
        cli.seed(namespace, name, Watermark[int](cursor=1))
        missing = cli("show", namespace, name + "x")
        assert missing.returncode == 4

        pasted = shell.paste(missing.stderr)

        assert pasted.returncode == 0, pasted.stderr
        assert name in pasted.stdout


def test_the_commands_suggested_for_an_invalid_state_work_when_pasted(
    cli: Cli, tmp_path: Path, names: list[str]
) -> None:
    shell = Shell(cli, tmp_path)
    for name in names:
        cli.store().write("files", name, WM, INVALID, expected_version=None)
        run = cli("run", *named(name))  # StateValidationError's message
        shown = cli("show", "files", name)  # show's own error
        assert run.returncode == 1 and shown.returncode == 1

        show = shell.paste(run.stderr, command="show")
        history = shell.paste(shown.stderr, command="history")
        reset = shell.paste(run.stderr, "--yes", command="reset")

        assert show.returncode == 1 and show.stdout.splitlines()[0] == display_address("files", name)
        assert history.returncode == 0, history.stderr
        assert reset.returncode == 0, reset.stderr
        assert cli("show", "files", name).returncode == 0  # valid again, after the pasted reset


def test_the_history_hint_of_a_rewind_to_a_missing_version_works_when_pasted(
    cli: Cli, tmp_path: Path, names: list[str]
) -> None:
    shell = Shell(cli, tmp_path)
    for name in names:
        cli.seed("files", name, Watermark[int](cursor=1))
        refused = cli("rewind", "files", name, "--to", "99", "--yes")
        assert refused.returncode == 4

        pasted = shell.paste(refused.stderr)

        assert pasted.returncode == 0, pasted.stderr
        assert display_address("files", name) in pasted.stdout


# -- exit statuses that match the table --------------------------------------------------------------


def test_show_and_list_of_a_value_that_does_not_validate_exit_1_after_printing_it(cli: Cli) -> None:
    cli.seed("numbers", "fine", Watermark[int](cursor=1))
    cli.store().write("numbers", "counter", WM, INVALID, expected_version=None)

    shown = cli("show", "numbers", "counter")
    listed = cli("list")
    listed_json = cli("list", "--json")
    raw = cli("show", "numbers", "counter", "--value")

    assert shown.returncode == 1 and "valid       NO:" in shown.stdout
    assert "does not validate" in shown.stderr and "stateful history numbers counter" in shown.stderr
    assert listed.returncode == 1 and "fine" in listed.stdout and "counter" in listed.stdout
    assert "1 of the 2 watermarks listed do not validate, e.g. numbers/counter" in listed.stderr
    assert listed_json.returncode == 1 and len(listed_json.json()["watermarks"]) == 2
    assert one_json_error(listed_json.stderr)["exit_code"] == 1
    assert (
        raw.returncode == 0 and json.loads(raw.stdout)["timestamp"] == "yesterday"
    )  # the document, as stored


def test_set_on_a_stored_value_that_does_not_validate_is_not_bad_input(cli: Cli) -> None:
    cli.store().write("numbers", "counter", WM, INVALID, expected_version=None)
    model = ["--model", NUMBERS]

    elsewhere = cli("set", "numbers", "counter", "--cursor", "7", "--yes", *model)
    bad_input = cli("set", "numbers", "counter", "--cursor", '"y"', "--yes", *model)
    fixed = cli("set", "numbers", "counter", "--timestamp", "2025-06-02T09:00:00Z", "--yes", *model)

    assert elsewhere.returncode == 1, elsewhere.stderr
    assert "your input was fine" in elsewhere.stderr and "stateful reset numbers counter" in elsewhere.stderr
    assert bad_input.returncode == 2 and "the new value does not validate" in bad_input.stderr
    assert fixed.returncode == 0, fixed.stderr


def test_the_history_footer_says_what_the_store_keeps(cli: Cli) -> None:
    cli.seed("numbers", "counter", Watermark[int](cursor=1), Watermark[int](cursor=2))

    result = cli("history", "numbers", "counter", STATEFUL_HISTORY_VERSIONS="7")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "(the store keeps the last 7 versions of each watermark)"
