"""``--format`` templates over the Engine API's JSON: the tag engine run as docker's CLI runs
``inspect -f`` (an anonymous template, ``missingkey=error``, docker/cli's functions).

Expected texts are Go 1.19's text/template and docker/cli's ``templates`` package; the
CLI end to end is in ``test_cli_daemon``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from logpipe.errors import TemplateError
from logpipe.template.cliformat import compile_format, render_format

INSPECT = {
    "Id": "565eb619b2ca" + "0" * 52,
    "Name": "/web1",
    "State": {"Status": "running", "Running": True, "Pid": 4242, "ExitCode": 0,
              "Error": "", "Health": None},
    "Config": {"Cmd": ["sh", "-c", "echo x"], "Entrypoint": None, "Env": ["A=1", "B=2"],
               "Labels": {"team": "core", "app": "web", "com.example.tier": "1"}},
    "HostConfig": {"LogConfig": {"Type": "local", "Config": {"max-size": "1m"}}},
    "Mounts": [{"Type": "bind", "Source": "/srv/a", "Destination": "/a", "RW": True},
               {"Type": "bind", "Source": "/srv/b", "Destination": "/b", "RW": False}],
    "LogPath": "",
}


def fmt(text: str, data=INSPECT) -> str:
    return render_format(text, data)


def error_of(text: str, data=INSPECT) -> str:
    with pytest.raises(TemplateError) as e:
        render_format(text, data)
    return str(e.value)


# -- range, if, with, variables: what the engine brings to --format -------------------------

def test_range_over_an_array_of_objects_reads_each_elements_fields():
    assert fmt("{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}") == "/srv/a:/a /srv/b:/b "


def test_range_with_key_and_value_walks_an_object_in_sorted_key_order():
    assert fmt("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}") \
        == "app=web;com.example.tier=1;team=core;"


def test_range_with_index_and_element_and_dollar_reaching_the_document():
    assert fmt("{{range $i, $m := .Mounts}}{{$i}}{{$m.Destination}}{{$.Name}} {{end}}") \
        == "0/a/web1 1/b/web1 "


def test_range_over_null_or_empty_runs_the_else_branch():
    assert fmt("{{range .Config.Entrypoint}}x{{else}}none{{end}}") == "none"
    assert fmt("{{range .Mounts}}x{{else}}none{{end}}", {"Mounts": []}) == "none"


def test_range_break_continue_and_a_scalar_refused_with_gos_text():
    assert fmt("{{range .Config.Cmd}}{{if eq . \"-c\"}}{{continue}}{{end}}{{.}} {{end}}") \
        == "sh echo x "
    assert error_of("{{range .State.Pid}}{{end}}") \
        == 'template: :1:14: executing "" at <.State.Pid>: range can\'t iterate over 4242'


def test_if_else_with_and_comparisons():
    assert fmt("{{if .State.Running}}up{{else}}down{{end}}") == "up"
    assert fmt("{{if .State.Running}}up{{else if eq .State.ExitCode 0}}ok{{end}}",
               {"State": {"Running": False, "ExitCode": 0}}) == "ok"
    assert fmt("{{with .HostConfig.LogConfig}}{{.Type}} {{index .Config \"max-size\"}}{{end}}") \
        == "local 1m"
    assert fmt("{{with .State.Health}}{{.Status}}{{else}}no healthcheck{{end}}") \
        == "no healthcheck"
    assert fmt("{{$n := len .Mounts}}{{if gt $n 1}}{{$n}} mounts{{end}}") == "2 mounts"


def test_index_reads_arrays_and_objects_and_a_missing_key_is_no_value():
    assert fmt("{{index .Config.Cmd 2}}|{{(index .Mounts 1).Source}}") == "echo x|/srv/b"
    assert fmt('{{index .Config.Labels "team"}}|{{index .Config.Labels "nope"}}') \
        == "core|<no value>"
    assert error_of("{{index .Mounts 5}}") \
        == 'template: :1:2: executing "" at <index .Mounts 5>: error calling index: ' \
           "index out of range: 5"


# -- what --format printed before it shared the tag engine ----------------------------------

def test_values_print_as_gos_percent_v():
    assert fmt("{{.State.Pid}} {{.State.Running}} {{.Config.Cmd}} {{.HostConfig.LogConfig}}") \
        == "4242 true [sh -c echo x] map[Config:map[max-size:1m] Type:local]"
    assert fmt("{{.Config.Entrypoint}}|{{.State.Health.Status}}|{{.LogPath}}|") \
        == "<no value>|<no value>||"
    assert fmt("{{.}}", {"a": [1, None], "b": 0.5, "c": 2.0}) == "map[a:[1 <nil>] b:0.5 c:2]"


def test_json_keeps_the_daemons_key_order_and_does_not_escape_html():
    assert fmt("{{json .HostConfig.LogConfig}}") == '{"Type":"local","Config":{"max-size":"1m"}}'
    assert fmt("{{json .Config.Cmd}} {{json .State.Health}} {{json .Mounts}}") \
        == '["sh","-c","echo x"] null [{"Type":"bind","Source":"/srv/a","Destination":"/a",' \
           '"RW":true},{"Type":"bind","Source":"/srv/b","Destination":"/b","RW":false}]'
    assert fmt("{{json .}}", {"x": "<a&b> é"}) == '{"x":"<a&b> é"}'


def test_string_functions_take_any_value_as_dockers_typed_fields_allow():
    assert fmt("{{upper .Name}} {{lower \"AbC\"}} {{title .State.Status}} {{upper .State.Pid}}") \
        == "/WEB1 abc Running 4242"
    assert fmt('{{join .Config.Cmd " "}}|{{join .Config.Entrypoint ","}}|{{split .Name "e"}}') \
        == "sh -c echo x||[/w b1]"
    assert fmt("{{len .Config.Cmd}} {{len .Config.Entrypoint}} {{len .Name}}") == "3 0 5"
    assert fmt("{{.Name | upper | printf \"%s!\"}}") == "/WEB1!"
    assert fmt("{{println .Name .State.Pid}}") == "/web1 4242\n"


def test_docker_clis_pad_truncate_and_gos_printf():
    assert fmt("[{{pad .Name 1 2}}]{{truncate .Id 12}}") == "[ /web1  ]565eb619b2ca"
    assert fmt('{{printf "%s=%d" .Name .State.Pid}}') == "/web1=4242"


def test_trim_markers_comments_and_literals():
    assert fmt("a  {{- .Name -}}  b {{/* note */}}{{`raw`}} {{\"q\"}} {{1}} {{true}}") \
        == "a/web1b raw q 1 true"


# -- errors: Go's wording, the anonymous template's name ------------------------------------

def test_a_missing_key_is_an_error_as_with_missingkey_error():
    assert error_of("{{.Nope}}") \
        == 'template: :1:2: executing "" at <.Nope>: map has no entry for key "Nope"'
    assert error_of("{{range .Mounts}}{{.Nope}}{{end}}") \
        == 'template: :1:19: executing "" at <.Nope>: map has no entry for key "Nope"'
    assert error_of("{{.Name.First}}") \
        == 'template: :1:7: executing "" at <.Name.First>: can\'t evaluate field First in ' \
           "type string"


def test_syntax_errors_and_unknown_functions_are_refused_before_running():
    assert error_of("{{.Name") == "template: :1: unclosed action"
    assert error_of("{{nope .Name}}") == 'template: :1: function "nope" not defined'
    assert error_of("{{range .Mounts}}") == "template: :1: unexpected EOF"
    assert error_of('{{truncate .Name "x"}}') \
        == 'template: :1:17: executing "" at <"x">: expected integer; found "x"'
    assert "does not support {{define}} in a --format template" \
        in error_of('{{define "x"}}{{end}}')


def test_a_format_is_compiled_once_for_all_rows():
    assert compile_format("{{.ID}}") is compile_format("{{.ID}}")
    rows = [{"ID": str(i)} for i in range(3)]
    assert [compile_format("{{.ID}}").render(r) for r in rows] == ["0", "1", "2"]


def test_the_cli_loads_the_template_engine_only_for_a_format():
    """The CLI's start-up pays for the engine (a few ms) only when --format is given."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "runtime.cli", "ps", "--help"],
                         capture_output=True, text=True, timeout=60)
    modules = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines()
               if line.startswith("import time:")}
    assert "runtime.cli" in modules, out.stderr  # the CLI's own modules are listed
    assert not {m for m in modules if m.startswith("logpipe.template")}
