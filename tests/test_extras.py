"""Extra attributes (labels, labels-regex, env, env-regex) and per-driver key mangling.

Expected behaviour from shared/reference/docker-logging.md §3.2 and moby 20.10.24's
loginfo.go; regexp errors and matches as Go 1.19's regexp gives them.
"""

from __future__ import annotations

import time

import pytest

from logpipe.driver import LogInfo
from logpipe.errors import LogOptError
from logpipe.extras import (compile_go_regexp, compile_selector, extra_attrs, mangle_gelf,
                            mangle_journald)

pytestmark = pytest.mark.unit


@pytest.fixture
def info() -> LogInfo:
    return LogInfo(
        container_id="c" * 64,
        log_dir="/tmp",
        labels={"com.example.team-x": "core", "app": "web", "_private": "p", "9lives": "cat"},
        env=("APP_MODE=prod", "APP_DEBUG=", "PATH=/usr/bin", "URL=a=b", "NOEQUALS",
             "APP_MODE=override"),
    )


def test_labels_option_picks_existing_labels_by_name_and_ignores_missing(info):
    assert extra_attrs({"labels": "app,missing"}, info) == {"app": "web"}


def test_label_names_are_not_trimmed(info):
    # Go's strings.Split: "app, 9lives" asks for " 9lives", which does not exist.
    assert extra_attrs({"labels": "app, 9lives"}, info) == {"app": "web"}


def test_env_option_reads_key_value_entries(info):
    assert extra_attrs({"env": "PATH,URL,APP_DEBUG,NOEQUALS,nope"}, info) == {
        "PATH": "/usr/bin", "URL": "a=b", "APP_DEBUG": ""}


def test_later_env_entries_win(info):
    assert extra_attrs({"env": "APP_MODE"}, info) == {"APP_MODE": "override"}


def test_regexes_search_keys_unanchored(info):
    assert extra_attrs({"labels-regex": "example"}, info) == {"com.example.team-x": "core"}
    assert extra_attrs({"env-regex": "^APP_"}, info) == {"APP_MODE": "override", "APP_DEBUG": ""}


def test_labels_regex_works_without_labels(info):
    # moby#42039: 20.10.2 ignored labels-regex unless labels was set too; fixed by 20.10.24.
    assert extra_attrs({"labels-regex": "^app$"}, info) == {"app": "web"}


def test_all_four_options_are_united(info):
    opts = {"labels": "app", "labels-regex": "^9", "env": "PATH", "env-regex": "MODE$"}
    assert extra_attrs(opts, info) == {
        "app": "web", "9lives": "cat", "PATH": "/usr/bin", "APP_MODE": "override"}


def test_empty_options_select_nothing(info):
    assert extra_attrs({}, info) == {}
    assert extra_attrs({"labels": "", "labels-regex": "", "env": "", "env-regex": ""}, info) == {}


def test_key_mod_is_applied_as_keys_are_added(info):
    assert extra_attrs({"labels-regex": "."}, info, mangle_journald) == {
        "COM_EXAMPLE_TEAM_X": "core", "APP": "web", "PRIVATE": "p", "9LIVES": "cat"}
    assert extra_attrs({"labels": "app,_private"}, info, mangle_gelf) == {
        "_app": "web", "_private": "p"}


def test_bad_regex_reports_go_error_text(info):
    with pytest.raises(LogOptError) as exc:
        extra_attrs({"labels-regex": "["}, info)
    assert str(exc.value) == "error parsing regexp: missing closing ]: `[`"
    with pytest.raises(LogOptError, match=r"^error parsing regexp: missing closing \): `\(a`$"):
        extra_attrs({"env-regex": "(a"}, info)


@pytest.mark.parametrize("expr, message", [
    (r"(a)\1", r"invalid escape sequence: `\1`"),
    ("(?=a)", "invalid or unsupported Perl syntax: `(?=`"),
    ("(?!a)", "invalid or unsupported Perl syntax: `(?!`"),
    ("(?<=a)b", "invalid or unsupported Perl syntax: `(?<`"),
    ("(?P=n)", "invalid or unsupported Perl syntax: `(?P`"),
    ("a++", "invalid nested repetition operator: `++`"),
    ("a**", "invalid nested repetition operator: `**`"),
    ("*a", "missing argument to repetition operator: `*`"),
    ("a)", "unexpected ): `a)`"),
    ("[z-a]", "invalid character class range: `z-a`"),
    ("x{1001}", "invalid repeat count: `{1001}`"),
    ("\\", "trailing backslash at end of expression: ``"),
    (r"\Z", r"invalid escape sequence: `\Z`"),
])
def test_constructs_re2_rejects_are_rejected_with_go_text(expr, message):
    with pytest.raises(LogOptError) as exc:
        compile_go_regexp(expr)
    assert str(exc.value) == "error parsing regexp: " + message


def test_unicode_classes_are_refused_with_a_clear_message():
    with pytest.raises(LogOptError, match=r"cannot evaluate the Unicode class `\\p\{Greek\}`"):
        compile_go_regexp(r"[\p{Greek}]")


def test_a_syntax_error_after_a_unicode_class_is_reported_as_go_reports_it():
    with pytest.raises(LogOptError, match=r"^error parsing regexp: missing closing \): `\(\\pL`$"):
        compile_go_regexp(r"(\pL")


@pytest.mark.parametrize("expr, matches, misses", [
    (r"^ab$", ["ab"], ["ab\n", "xab"]),            # RE2 $ is end of text, never before a \n
    (r"\d", ["5"], ["\u0665"]),                     # \d is ASCII only
    (r"\w+", ["a_1"], ["é"]),
    ("[[:upper:]]", ["A"], ["a"]),                  # POSIX classes
    ("a(?i)b", ["aB"], ["AB"]),                     # flags apply from where they are set
    ("a{,2}", ["a{,2}"], ["aa"]),                   # not a repeat in RE2: literal braces
    (r"\Qa.b\E", ["a.b"], ["axb"]),
    ("(?P<team>core|edge)", ["core"], ["web"]),
    ("(?s)a.b", ["a\nb"], []),
    ("a.b", [], ["a\nb"]),
    (r"\B", ["", "ab"], ["a"]),                    # RE2's \B matches an empty text
])
@pytest.mark.parametrize("compile_", [compile_go_regexp, compile_selector])
def test_re2_semantics_are_kept(expr, matches, misses, compile_):
    rx = compile_(expr)
    assert [bool(rx.search(s)) for s in matches] == [True] * len(matches)
    assert [bool(rx.search(s)) for s in misses] == [False] * len(misses)


def test_labels_regex_runs_in_linear_time_whatever_the_expression():
    """``^(a+)+$`` against 30 ``a`` and a ``!``: 2^30 steps for a backtracking engine (10 s of
    a frozen daemon); RE2 needs one pass."""
    labels = {"a" * 30 + "!": "evil", "a" * 5000 + "!": "long", "aaa": "ok"}
    info = LogInfo(container_id="c" * 64, log_dir="/tmp", labels=labels,
                   env=("X" * 30 + "!=1",))
    started = time.monotonic()
    assert extra_attrs({"labels-regex": "^(a+)+$", "env-regex": "^(X+)+$"}, info) == \
        {"aaa": "ok"}
    assert time.monotonic() - started < 0.5


def test_labels_regex_refuses_what_go_refuses_and_accepts_unicode_classes(info):
    with pytest.raises(LogOptError,
                       match=r"^error parsing regexp: invalid escape sequence: `\\1`$"):
        extra_attrs({"labels-regex": r"(a)\1"}, info)
    greek = LogInfo(container_id="c" * 64, log_dir="/tmp", labels={"\u03b1": "alpha", "a": "latin"})
    assert extra_attrs({"labels-regex": r"^\p{Greek}$"}, greek) == {"\u03b1": "alpha"}


@pytest.mark.parametrize("key, mangled", [
    ("com.example.team-x", "COM_EXAMPLE_TEAM_X"),
    ("my_var", "MY_VAR"),
    ("__leading", "LEADING"),
    ("9lives", "9LIVES"),
    ("café", "CAF_"),
])
def test_journald_mangling(key, mangled):
    assert mangle_journald(key) == mangled


def test_gelf_mangling_prefixes_an_underscore_once():
    assert (mangle_gelf("app"), mangle_gelf("_app")) == ("_app", "_app")
