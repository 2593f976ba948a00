"""The ``tag`` template: Docker 20.10's fields, functions, output and error texts.

Expected strings come from shared/reference/docker-logging.md §3.1 (verified on a 20.10.24
daemon) and from Go 1.19's text/template (the Go of Debian's 20.10.24 build), whose wording
Docker passes through unchanged; the less obvious ones were checked against that Go.
"""

from __future__ import annotations

import pytest

from logpipe.driver import LogInfo
from logpipe.errors import LogOptError, TemplateError
from logpipe.template import DEFAULT_TAG, Template, compile_template, render_tag

pytestmark = pytest.mark.unit

CONTAINER_ID = "565eb619b2ca" + "0123456789abcdef" * 3 + "0123"
IMAGE_ID = "sha256:bc8de" + "f" * 59


@pytest.fixture
def info() -> LogInfo:
    return LogInfo(
        container_id=CONTAINER_ID,
        log_dir="/var/lib/logpipe/containers/x",
        config={"tag": "{{.Name}}", "max-size": "1k"},
        container_name="/web1",
        image_id=IMAGE_ID,
        image_name="bb:latest",
        entrypoint="sh",
        args=("-c", "echo x"),
        created="2026-11-22T10:35:50.12345Z",
        env=("PATH=/usr/bin", "MODE=a=b"),
        labels={"com.example.team": "core", "app": "web"},
        daemon_name="docker",
        hostname="vm",
    )


def render(text: str, info: LogInfo) -> str:
    return compile_template(text).render(info)


# --- Fields --------------------------------------------------------------------------


def test_id_is_the_first_12_characters_of_the_container_id(info):
    assert render("{{.ID}}", info) == "565eb619b2ca"
    assert DEFAULT_TAG == "{{.ID}}"


def test_full_id_is_the_whole_container_id(info):
    assert render("{{.FullID}}", info) == CONTAINER_ID


def test_name_drops_the_leading_slash_and_container_name_keeps_it(info):
    assert render("{{.Name}}|{{.ContainerName}}", info) == "web1|/web1"


def test_container_name_gets_docker_slash_when_loginfo_has_none(info):
    bare = LogInfo(container_id=CONTAINER_ID, log_dir="/tmp", container_name="web1")
    assert render("{{.Name}}|{{.ContainerName}}", bare) == "web1|/web1"


def test_image_id_is_12_characters_including_the_sha256_prefix(info):
    # Docker's quirk: ContainerImageID[:12] of "sha256:<hex>".
    assert render("{{.ImageID}}", info) == "sha256:bc8de"


def test_image_full_id_and_image_name_are_as_given(info):
    assert render("{{.ImageFullID}} {{.ImageName}}", info) == f"{IMAGE_ID} bb:latest"


def test_daemon_name_command_and_hostname(info):
    assert render("{{.DaemonName}}|{{.Command}}|{{.Hostname}}", info) == "docker|sh -c echo x|vm"


def test_lists_and_maps_print_like_go_fmt_v(info):
    assert render("{{.ContainerArgs}}", info) == "[-c echo x]"
    assert render("{{.ContainerEnv}}", info) == "[PATH=/usr/bin MODE=a=b]"
    assert render("{{.ContainerLabels}}", info) == "map[app:web com.example.team:core]"
    assert render("{{.Config}}", info) == "map[max-size:1k tag:{{.Name}}]"
    assert render("{{.ContainerEntrypoint}}|{{.LogPath}}|", info) == "sh||"


def test_labels_are_read_with_index_and_missing_keys_are_empty(info):
    assert render('{{index .ContainerLabels "com.example.team"}}', info) == "core"
    assert render('[{{index .ContainerLabels "nope"}}]', info) == "[]"


def test_missing_map_key_as_a_field_prints_go_no_value(info):
    assert render("{{.ContainerLabels.app}} {{.ContainerLabels.nope}}", info) == "web <no value>"


def test_time_methods_go_has_but_logpipe_lacks_are_refused_clearly():
    assert error_of('{{.ContainerCreated.Format "2006"}}').endswith(
        "logpipe does not support the time.Time method Format")


@pytest.mark.parametrize("method", [
    "Year", "YearDay", "Day", "Weekday", "Hour", "Minute", "Second", "Nanosecond", "UTC",
    "UnixMilli", "UnixMicro", "UnixNano", "IsZero",
])
def test_time_methods_beyond_string_unix_and_month_are_refused_at_compile_time(method):
    assert error_of(f"{{{{.ContainerCreated.{method}}}}}") == (
        f'template: log-tag:1:19: executing "log-tag" at <.ContainerCreated.{method}>: '
        f"logpipe does not support the time.Time method {method}")


def test_container_created_prints_as_go_time_string_and_json_as_rfc3339nano(info):
    assert render("{{.ContainerCreated}}", info) == "2026-11-22 10:35:50.12345 +0000 UTC"
    assert render("{{json .ContainerCreated}}", info) == '"2026-11-22T10:35:50.12345Z"'
    assert render("{{.ContainerCreated.Unix}} {{.ContainerCreated.Month}}", info) == (
        "1795343750 November")


def test_dot_prints_the_struct_as_go_does(info):
    out = render("{{.}}", info)
    assert out.startswith("{map[max-size:1k tag:{{.Name}}] 565eb619b2ca")
    assert out.endswith("map[app:web com.example.team:core]  docker}")
    assert render("{{print .}}", info).startswith("&{map[")


# --- Functions -----------------------------------------------------------------------


def test_docker_string_functions(info):
    assert render("{{upper .Name}} {{lower `AbC`}} {{title `hello wORLD-x_y`}}", info) == (
        "WEB1 abc Hello WORLD-X_y")
    assert render('{{split .ImageName ":"}} {{join .ContainerArgs ","}}', info) == (
        "[bb latest] -c,echo x")
    assert render("{{truncate .FullID 4}} {{truncate .Name 99}}", info) == "565e web1"


def test_pad_pads_only_non_empty_strings(info):
    assert render("[{{pad .Name 2 1}}]", info) == "[  web1 ]"
    assert render('[{{pad "" 2 1}}]', info) == "[]"


def test_json_escapes_like_go_without_html_escaping(info):
    assert render('{{json "a<b>&\\"c\\"\\n\\u2028"}}', info) == '"a<b>&\\"c\\"\\n\\u2028"'
    assert render("{{json .ContainerArgs}} {{json .ContainerLabels}}", info) == (
        '["-c","echo x"] {"app":"web","com.example.team":"core"}')
    assert render("{{json .}}", info).startswith('{"Config":{"max-size":"1k","tag":"{{.Name}}"},')


def test_printf_supports_s_d_v_q_and_reports_bad_verbs_like_go(info):
    assert render('{{printf "%s-%d-%v-%q" .Name 42 .ContainerArgs .Name}}', info) == (
        'web1-42-[-c echo x]-"web1"')
    assert render('{{printf "%5s|%-4d|%03d" "ab" 7 5}}', info) == "   ab|7   |005"
    assert render('{{printf "%d" .Name}}', info) == "%!d(string=web1)"
    assert render('{{printf "%s %s" .Name}}', info) == "web1 %!s(MISSING)"
    assert render('{{printf "x" 1}}', info) == "x%!(EXTRA int=1)"


@pytest.mark.parametrize("fmt, refusal", [
    ("%[2]s %[1]s", "argument indexes ([n]) in printf formats"),
    ("%5[1]s", "argument indexes ([n]) in printf formats"),
    ("%.[1]s", "argument indexes ([n]) in printf formats"),
    ("%*s", "* widths or precisions in printf formats"),
    ("%-*s", "* widths or precisions in printf formats"),
    ("%.*s", "* widths or precisions in printf formats"),
])
def test_printf_argument_indexes_and_star_operands_are_refused(fmt, refusal, info):
    assert error_of(f'{{{{printf "{fmt}" 3 .Name}}}}', info) == (
        f'template: log-tag:1:2: executing "log-tag" at <printf "{fmt}" 3 .Name>: '
        f"error calling printf: logpipe does not support {refusal}")


def test_printf_refusals_also_apply_to_a_piped_format(info):
    assert error_of('{{"%[1]s" | printf}}', info).endswith(
        "error calling printf: logpipe does not support argument indexes ([n]) in printf formats")


@pytest.mark.parametrize("verb", list("eEfFgGxXb"))
def test_printf_float_verbs_are_refused(verb, info):
    assert error_of(f'{{{{printf "%{verb}" 1.5}}}}', info).endswith(
        f"error calling printf: logpipe does not support %{verb} for floats in printf, only %v")


def test_printf_precision_for_a_float_is_refused(info):
    assert error_of('{{printf "%.2v" 1.5}}', info).endswith(
        "error calling printf: logpipe does not support a precision for floats in printf")


def test_floats_still_print_with_v_and_json_as_go_does(info):
    assert render('{{printf "%v|%6v|%v|%05v" 1.5 0.25 1e21 -2.5}}', info) == (
        "1.5|  0.25|1e+21|-02.5")
    assert render("{{1.5}} {{print 1e6 0.000012}} {{json 1e-7}} {{json 1e21}}", info) == (
        "1.5 1e+06 1.2e-05 1e-7 1e+21")


def test_a_non_float_verb_on_a_float_is_still_gos_bad_verb(info):
    assert render('{{printf "%d|%s" 1.5 2.0}}', info) == "%!d(float64=1.5)|%!s(float64=2)"


@pytest.mark.parametrize("name", ["html", "js", "urlquery", "slice", "call"])
def test_builtins_docker_tags_do_not_use_are_refused_as_undefined(name):
    assert error_of(f"{{{{{name} .Name}}}}") == (
        f'template: log-tag:1: function "{name}" not defined')


def test_print_adds_spaces_only_between_non_strings(info):
    assert render('{{print 1 2 "a" "b" 3}}', info) == "1 2ab3"


def test_eq_refuses_slices_with_go_1_19_wording(info):
    assert error_of("{{eq .ContainerArgs .ContainerArgs}}", info).endswith(
        "error calling eq: non-comparable type [-c echo x]: []string")


def test_truncate_counts_bytes_and_a_cut_rune_reads_as_go_decodes_it(info):
    # Go cuts "é" (2 bytes) after one byte; each invalid byte then reads as U+FFFD.
    assert render('{{truncate "aé" 2}}|{{truncate "😀" 2}}|{{len "é"}}', info) == (
        "a\ufffd|\ufffd\ufffd|2")


def test_builtins_len_eq_ne_and_or_not(info):
    assert render("{{len .Name}} {{len .ContainerArgs}}", info) == "4 2"
    assert render('{{eq .Name "web1"}} {{eq .Name "x" "web1"}} {{ne .Name "web1"}}', info) == (
        "true true false")
    assert render('{{or .ContainerLabels.nope "none"}} {{and .Name .ImageName}}', info) == (
        "none bb:latest")
    assert render("{{not .Name}} {{not .LogPath}}", info) == "false true"


def test_pipeline_value_becomes_the_last_argument(info):
    assert render('{{.Name | printf "%s!" | upper}}', info) == "WEB1!"


def test_parenthesised_pipelines_are_arguments(info):
    assert render('{{printf "%s/%s" (upper .Name) (index .ContainerArgs 1)}}', info) == (
        "WEB1/echo x")


def test_string_literals_take_go_escapes_and_raw_strings_are_verbatim(info):
    assert render('{{"tab\\there \\x41\\u00e9"}}', info) == "tab\there Aé"
    assert render("{{`raw \\t`}}", info) == "raw \\t"


def test_trim_markers_remove_surrounding_whitespace(info):
    assert render("a  {{- .Name -}}  \n b", info) == "aweb1b"
    assert render("{{-3}}", info) == "-3"  # no space: a negative number, not a trim marker


def test_if_else_and_else_if(info):
    tmpl = ('{{if eq .Name "db"}}db{{else if .ContainerLabels.app}}'
            "app={{.ContainerLabels.app}}{{else}}none{{end}}")
    assert render(tmpl, info) == "app=web"


def test_with_and_range(info):
    assert render("{{with .ContainerLabels.app}}[{{.}}]{{else}}-{{end}}", info) == "[web]"
    assert render("{{range $i, $a := .ContainerArgs}}{{$i}}={{$a}};{{end}}", info) == (
        "0=-c;1=echo x;")
    assert render("{{range $k, $v := .ContainerLabels}}{{$k}};{{end}}", info) == (
        "app;com.example.team;")


def test_comments_render_nothing(info):
    assert render("{{/* a comment */}}{{.Name}}", info) == "web1"


# --- Errors (Go's wording) -------------------------------------------------------------


def error_of(text: str, info: LogInfo | None = None) -> str:
    with pytest.raises(TemplateError) as exc:
        tmpl = compile_template(text)
        if info is not None:
            tmpl.render(info)
    return str(exc.value)


def test_unknown_field_fails_at_compile_time_with_docker_wording():
    assert error_of("{{.Foo}}") == (
        'template: log-tag:1:2: executing "log-tag" at <.Foo>: '
        "can't evaluate field Foo in type *logger.Info")


def test_unknown_field_column_is_a_zero_based_byte_offset_in_its_line():
    assert error_of("é {{ .Foo }}").startswith("template: log-tag:1:6: ")
    assert error_of("a\nb{{.Foo}}").startswith("template: log-tag:2:3: ")


def test_field_of_a_string_is_reported_where_the_chain_continues():
    # Go positions the node of ".ID.Foo" at ".Foo".
    assert error_of("{{.ID.Foo}}") == (
        'template: log-tag:1:5: executing "log-tag" at <.ID.Foo>: '
        "can't evaluate field Foo in type string")


def test_unknown_field_inside_range_is_checked_against_the_element_type():
    assert error_of("{{range .ContainerEnv}}{{.Foo}}{{end}}").endswith(
        "can't evaluate field Foo in type string")


def test_error_context_is_the_whole_node_as_in_go_1_19():
    # Go 1.20+ would cut it to 20 bytes; 20.10.24 was built with Go 1.19.
    assert error_of("{{.ContainerCreated.Foo}}") == (
        'template: log-tag:1:19: executing "log-tag" at <.ContainerCreated.Foo>: '
        "can't evaluate field Foo in type time.Time")


def test_argument_and_arity_errors_are_found_at_compile_time():
    assert error_of("{{upper 3}}") == (
        'template: log-tag:1:8: executing "log-tag" at <3>: expected string; found 3')
    assert error_of("{{.Name | pad 1}}").endswith("wrong number of args for pad: want 3 got 2")
    assert error_of("{{.ID 1}}").endswith("wrong number of args for ID: want 0 got 1")
    assert error_of("{{.ContainerArgs | upper}}").endswith(
        "at <upper>: wrong type for value; expected string; got []string")


def test_field_of_a_parenthesised_pipeline_is_reported_where_go_reports_it(info):
    # Go blames the last node it evaluated inside the parentheses.
    assert error_of("{{(.Name).Foo}}", info) == (
        'template: log-tag:1:3: executing "log-tag" at <.Name>: '
        "can't evaluate field Foo in type string")


def test_unclosed_action():
    assert error_of("{{.ID") == "template: log-tag:1: unclosed action"
    assert error_of("{{.ID\n") == "template: log-tag:2: unclosed action started at log-tag:1"


def test_undefined_function():
    assert error_of("{{foo .ID}}") == 'template: log-tag:1: function "foo" not defined'


def test_other_parse_errors_use_go_wording():
    assert error_of("{{.ID | upper}}{{end}}") == "template: log-tag:1: unexpected {{end}}"
    assert error_of("{{if .ID}}x") == "template: log-tag:1: unexpected EOF"
    assert error_of("{{.ID!}}") == "template: log-tag:1: bad character U+0021 '!'"
    assert error_of('{{.ID | "x"}}') == (
        "template: log-tag:1: non executable command in pipeline stage 2")
    assert error_of("{{}}") == "template: log-tag:1: missing value for command"


def test_wrong_argument_types_fail_at_render_with_go_wording(info):
    assert error_of("{{upper .ContainerArgs}}", info) == (
        'template: log-tag:1:8: executing "log-tag" at <.ContainerArgs>: '
        "wrong type for value; expected string; got []string")
    assert error_of('{{truncate .Name "3"}}', info).endswith('expected integer; found "3"')
    assert error_of("{{upper}}", info).endswith("wrong number of args for upper: want 1 got 0")
    assert error_of("{{index .ContainerArgs 5}}", info).endswith(
        "error calling index: index out of range: 5")


def test_template_errors_are_log_opt_errors():
    assert issubclass(TemplateError, LogOptError)


def test_define_and_template_are_refused_clearly():
    assert "does not support {{define}}" in error_of('{{define "x"}}{{end}}')
    assert "does not support {{template}}" in error_of('{{template "x"}}')


# --- Safety: templates cannot reach Python -------------------------------------------------


@pytest.mark.parametrize("text", [
    "{{.__class__}}",
    "{{.ID.__class__}}",
    "{{.__init__.__globals__}}",
    "{{.container_id}}",
    "{{.info}}",
    "{{.ContainerArgs.count}}",
    "{{.ContainerCreated.dt}}",
    "{{$.__dict__}}",
])
def test_python_attributes_are_not_fields(text):
    with pytest.raises(TemplateError, match="can't evaluate field"):
        compile_template(text)


@pytest.mark.parametrize("text", [
    '{{index . "__class__"}}',
    '{{call .ID "x"}}',
    "{{printf `%v` .Name.__class__}}",
    "{{(.Name).upper}}",
])
def test_python_internals_are_unreachable_through_functions(text, info):
    with pytest.raises(TemplateError):
        compile_template(text).render(info)


def test_map_keys_named_like_python_attributes_are_just_missing_keys(info):
    assert render("{{.ContainerLabels.__class__}}|{{.Config.keys}}", info) == (
        "<no value>|<no value>")


def test_rendered_values_never_show_python_reprs(info):
    out = render("{{.}} {{printf `%v %+v` . .ContainerCreated}} {{json .}}", info)
    assert "LogInfo" not in out and "object at" not in out and "<class" not in out


# --- API -----------------------------------------------------------------------------------


def test_compile_once_render_many(info):
    tmpl = compile_template("{{.Name}}")
    assert isinstance(tmpl, Template)
    other = LogInfo(container_id=CONTAINER_ID, log_dir="/tmp", container_name="/db")
    assert (tmpl.render(info), tmpl.render(other)) == ("web1", "db")
    assert compile_template("{{.Name}}") is tmpl  # cached: compiling again is free


def test_render_tag_uses_the_tag_option_or_the_default(info):
    assert render_tag({"tag": "{{.Name}}/{{.ID}}"}, info) == "web1/565eb619b2ca"
    assert render_tag({}, info) == "565eb619b2ca"
    assert render_tag({"tag": ""}, info, default="{{.FullID}}") == CONTAINER_ID


def test_template_name_appears_in_errors():
    with pytest.raises(TemplateError, match=r"^template: awslogs-stream:1: unclosed action$"):
        compile_template("{{", name="awslogs-stream")
