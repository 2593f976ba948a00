"""The CLI is a package of the top layer (``runtime/cli/``; test_layering.py checks that nothing
below imports it): it starts without the daemon's server, and the pieces it shares with the
daemon (units, ``since``, the ``logs`` writer) exist once."""

from __future__ import annotations

import contextlib
import io
import pathlib
import subprocess
import sys

import pytest
from hypothesis import example, given, settings, strategies as st

from logpipe.errors import LogpipeError
from logpipe.output import WRITE_SIZE, write_streams
from logpipe.timespec import NS, parse_since
from logpipe.units import human_duration, human_size
from runtime.cli.errors import CommandError
from runtime.cli.flags import key_values

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_the_installed_logpipe_command_is_the_cli_package():
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "logpipe"]
    assert script.value == "runtime.cli:main"


@pytest.mark.parametrize("argv", [["ps", "--help"], ["logs", "--help"], ["version"]])
def test_the_cli_starts_without_the_daemon_or_aiohttp(argv):
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "runtime.cli", *argv],
                         capture_output=True, text=True, timeout=60,
                         env={"LOGPIPE_HOST": "unix:///nonexistent/logpipe.sock",
                              "LOGPIPE_NO_AUTOSTART": "1", "PATH": "/usr/bin:/bin"})
    modules = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines()
               if line.startswith("import time:")}
    assert "runtime.cli.parser" in modules, out.stderr
    heavy = {m for m in modules if m.split(".")[0] in ("aiohttp", "asyncio", "msgspec")
             or m.startswith("runtime.api") or m in ("runtime.daemon", "runtime.containers", "runtime.config")}
    assert not heavy


SAMPLE_ARGVS = [["ps"], ["ps", "-aq", "--format", "{{.ID}}", "-f", "name=a", "-n", "2"],
                ["-H", "unix:///x", "logs", "-n", "5", "-f", "c"], ["logs", "--log-dir", "d"],
                ["--host=unix:///x", "inspect", "-f", "{{.Id}}", "a", "b"], ["-Hunix:///x", "ps"],
                ["run", "-d", "-v", "/a:/b", "--rm", "img", "sh", "-c", "x"],
                ["image", "prune", "-a"], ["system", "df", "-v"], ["stop", "-t", "3", "a"],
                ["network", "ls", "-q"], ["version"]]
BAD_ARGVS = [["ps", "--bogus"], ["logs", "-n"], ["inspect"], ["-H"], ["nope"], [],
             ["--ho", "x", "ps"], ["-h"], ["ps", "-h"], ["--version", "ps"], ["-v"]]


@pytest.mark.parametrize("argv", SAMPLE_ARGVS)
def test_the_parser_of_the_command_asked_reads_as_the_parser_of_all(argv):
    from runtime.cli.parser import build_parser

    lean, full = vars(build_parser(argv).parse_args(argv)), vars(build_parser().parse_args(argv))
    func = [getattr(f, "name", f) for f in (lean.pop("func"), full.pop("func"))]  # ``_Run``s
    assert func[0] == func[1] and lean == full


@pytest.mark.parametrize("argv", BAD_ARGVS)
def test_the_parser_of_the_command_asked_answers_help_and_errors_as_the_parser_of_all(
        argv, capsys):
    from runtime.cli.parser import build_parser

    said = []
    for parser in (build_parser(argv), build_parser()):
        with pytest.raises(SystemExit) as stop:
            parser.parse_args(argv)
            parser.exit(0)  # no command: main prints the help, which is the same
        said.append((stop.value.code, capsys.readouterr()))
    assert said[0] == said[1]


#: What may come before the command, and the words of a command line of ``ps``, ``logs`` or
#: ``inspect``, odd ones included.
PREFIXES = [[], ["-H", "unix:///s"], ["--host=unix:///s"], ["-Hunix:///s"], ["-H"], ["-H=x"],
            ["--ho", "x"], ["-h"], ["-v"], ["--hostx"], ["-H", "-x"], ["logs"]]
WORDS = ["-a", "--all", "-q", "-n", "--last", "-f", "--filter", "--format", "--no-trunc",
         "--log-dir", "--follow", "--tail", "--since", "--until", "-t", "--timestamps",
         "--details", "--type", "-H", "-h", "--", "-", "", "5", "-1", "x y", "all", "container",
         "image", "a=b", "{{.ID}}", "--format=x", "--tail=-3", "--all=1", "-aq", "-n5", "--ta",
         "name", "--last=2_0", "--type=image", "--type=volume", "-v", "ps"]


@given(st.sampled_from(PREFIXES), st.sampled_from(["ps", "logs", "inspect"]),
       st.lists(st.sampled_from(WORDS), max_size=6))
@example([], "inspect", ["name", "-f", "x", "all"])  # positionals in two runs: argparse errs
@example([], "logs", ["name", "-t", "all"])
@example(["-H", "unix:///s"], "ps", ["-n", "2_0", "--format={{.ID}}", "-a"])
@settings(max_examples=3000, deadline=None)
def test_the_quick_reading_of_ps_logs_and_inspect_is_argparses_or_none(prefix, command, words):
    """``quick_parse`` gives what argparse gives, or leaves the command line to it."""
    argv = [*prefix, command, *words]
    from runtime.cli.fastpath import quick_parse
    from runtime.cli.parser import build_parser

    quick = quick_parse(argv)
    if quick is None:
        return
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            full = vars(build_parser().parse_args(argv))
        except SystemExit:
            full = None
    assert full is not None, f"argparse refuses {argv}, quick_parse read it: {quick}"
    mine = vars(quick)
    assert mine.pop("func").name == full.pop("func").name and mine == full


@pytest.mark.parametrize("flag", ["-v", "--version"])
def test_version_alone_prints_what_argparses_version_action_prints(flag, capsys):
    from runtime.cli import main
    from runtime.cli.parser import build_parser

    assert main([flag]) == 0
    quick = capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args([flag])
    assert stop.value.code == 0 and capsys.readouterr() == quick
    assert quick.out.startswith("logpipe version ")


def test_the_quick_reading_takes_the_plain_command_lines():
    from runtime.cli.fastpath import quick_parse

    for argv in (["ps"], ["logs", "--tail", "100", "c"], ["-H", "unix:///s", "inspect", "a", "b"],
                 ["ps", "-a", "--format", "{{.Names}}"], ["logs", "-f", "-t", "--since=1h", "c"]):
        assert quick_parse(argv) is not None, argv


#: What the commonest commands (``ps``, ``logs``, ``inspect``, ``--version``) must not import:
#: each costs milliseconds at every start (``http.client`` brings ``email`` and ``ssl``;
#: ``socket`` builds its enums; ``urllib.parse`` its named tuples), or belongs to the daemon.
HEAVY = {"asyncio", "aiohttp", "ssl", "email", "http", "socket", "selectors", "subprocess",
         "threading", "urllib", "dataclasses", "logging", "tempfile", "tarfile", "zipfile",
         "shutil", "bz2", "lzma",
         "msgspec", "msgpack", "lz4", "orjson", "drivers", "boto3", "botocore", "google"}
#: The modules of ``runtime`` on their path: the CLI's parser, client and the commands' own.
LEAN_RUNTIME = {"runtime", "runtime.hosts", "runtime.cli", "runtime.cli.fastpath",
                "runtime.cli.client", "runtime.cli.http1", "runtime.cli.errors",
                "runtime.cli.listing", "runtime.cli.tables", "runtime.cli.logs"}


@pytest.fixture(scope="module")
def logged_container():
    """A daemon with ``lean``, a container that has logged two lines and exited."""
    from conftest import api_daemon, create, wait
    from runtime.cli.client import Client

    with api_daemon({"default-runtime": "process"}) as d:
        api = Client(d.host, autostart=False)
        cid = create(api, ["sh", "-c", "echo one; echo two >&2"], name="lean")
        api.post(f"/containers/{cid}/start")
        assert wait(api, cid) == 0
        yield d.host


@pytest.mark.e2e
@pytest.mark.parametrize("argv,out", [(["ps", "-a"], "lean"),
                                      (["logs", "--tail", "100", "lean"], "one"),
                                      (["inspect", "-f", "{{.Name}}", "lean"], "/lean"),
                                      (["-H", "{host}", "inspect", "lean"], '"Name": "/lean"'),
                                      (["--version"], "logpipe version ")])
def test_the_commonest_commands_import_only_what_they_use(logged_container, argv, out):
    """Run without ``site`` (the source tree on the path and no installed package), so a
    dependency creeping onto their path fails to import, and every module they do import
    is listed by ``-X importtime``."""
    argv = [a.replace("{host}", logged_container) for a in argv]
    res = subprocess.run([sys.executable, "-S", "-X", "importtime", "-m", "runtime.cli", *argv],
                         capture_output=True, text=True, timeout=60,
                         env={"LOGPIPE_HOST": logged_container, "LOGPIPE_NO_AUTOSTART": "1",
                              "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    errors = [line for line in res.stderr.splitlines() if not line.startswith("import time:")]
    assert res.returncode == 0 and out in res.stdout, (res.returncode, res.stdout, errors)
    modules = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines()
               if line.startswith("import time:")}
    assert not {m for m in modules if m.split(".")[0] in HEAVY}
    assert {m for m in modules if m.split(".")[0] == "runtime"} <= LEAN_RUNTIME
    if "-f" not in argv:  # a Go template is parsed into typing's NamedTuples
        assert "typing" not in modules
    # read by ``fastpath``: argparse is for the rarer command lines
    assert not modules & {"argparse", "gettext", "locale", "runtime.cli.parser"}


# -- one home for what the CLI and the daemon share ---------------------------------------------


def test_units_read_and_write_dockers_sizes_and_durations():
    assert human_size(1_500_000) == "1.5MB" and human_size(999) == "999B"
    assert human_duration(0.5) == "Less than a second"
    assert human_duration(90) == "About a minute"
    assert human_duration(3 * 86400) == "3 days"


def test_since_reads_the_cli_forms_and_the_api_form_in_one_function():
    now = 1_700_000_000 * NS + 123
    assert parse_since("", "since") == 0 and parse_since("", "until", api=True) == 0
    assert parse_since("1h", "since", now_ns=now) == (1_700_000_000 - 3600) * NS
    assert parse_since("1700000000.5", "since", api=True) == 1_700_000_000 * NS + NS // 2
    assert parse_since("0", "since", api=True) == 0  # the API: no bound
    with pytest.raises(ValueError, match='strconv.ParseInt: parsing "1h": invalid syntax'):
        parse_since("1h", "since", api=True)  # durations are the CLI's, never the API's
    with pytest.raises(ValueError, match='invalid value for "until"'):
        parse_since("yesterday", "until")


def test_logs_writer_keeps_order_and_sends_each_stream_to_its_file():
    out, err = io.BytesIO(), io.BytesIO()
    write_streams([(1, b"a\n"), (2, b"b\n"), (1, b"c\n"), (3, b"error\n")], out, err, False)
    assert out.getvalue() == b"a\nc\n" and err.getvalue() == b"b\nerror\n"


class _Recording(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []

    def write(self, data) -> int:
        self.writes.append(len(data))
        return super().write(data)


def test_logs_writer_writes_in_pipe_sized_runs_and_each_record_when_following():
    out = _Recording()
    records = [(1, b"x" * 1000 + b"\n")] * 200
    write_streams(records, out, io.BytesIO(), False)
    assert len(out.getvalue()) == 200 * 1001
    assert 1 < len(out.writes) < 10 and max(out.writes) < WRITE_SIZE + 1001
    following = _Recording()
    write_streams(records[:5], following, io.BytesIO(), True)
    assert following.writes == [1001] * 5


def test_key_values_is_the_one_reader_of_key_value_flags():
    assert key_values(["a=1", "b", "a=2"], "--label") == {"a": "2", "b": ""}
    with pytest.raises(LogpipeError, match='invalid argument "=x" for "--label" flag$'):
        key_values(["=x"], "--label")
    with pytest.raises(CommandError, match='invalid argument "b" for "--log-opt" flag: '
                                           'invalid key value pair format'):
        key_values(["a=1", "b"], "--log-opt", pair_required=True)
