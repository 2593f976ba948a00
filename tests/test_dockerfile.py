"""The Dockerfile parser, word expansion and ``.dockerignore`` matching, against what moby's
parser, shell lexer and fileutils answer for the same input."""

from __future__ import annotations

import pytest

from logpipe.errors import InvalidParameter
from runtime.build.context import Matcher, read_patterns
from runtime.build.dockerfile import (DockerfileError, apply_changes, apply_metadata,
                                      expand_word, expand_words, key_values, parse)

pytestmark = pytest.mark.unit


def test_continuations_comments_and_json_form():
    text = ("# syntax=docker/dockerfile:1\n"
            "FROM busybox AS base\n"
            "RUN echo a \\\n"
            "# a comment inside the continuation is dropped\n"
            "    && echo b\n"
            "\n"
            'CMD ["echo", "x y"]\n'
            "cmd echo not json [\n")
    ins = parse(text)
    assert [i.name for i in ins] == ["from", "run", "cmd", "cmd"]
    assert ins[1].args == "echo a     && echo b" and ins[1].original.startswith("RUN echo a")
    assert ins[2].json_form and ins[2].args == ["echo", "x y"]
    assert not ins[3].json_form and ins[3].args == "echo not json ["


def test_escape_directive_makes_backtick_the_continuation():
    ins = parse("# escape=`\nFROM busybox\nRUN echo c:\\path `\n  done\n")
    assert ins[1].args == "echo c:\\path   done"


def test_unknown_instruction_and_heredoc_are_refused():
    with pytest.raises(DockerfileError, match="unknown instruction: FROBNICATE"):
        parse("FROM busybox\nfrobnicate x\n")
    with pytest.raises(DockerfileError, match="heredocs are only supported with BuildKit"):
        parse("FROM busybox\nRUN <<EOF\necho\nEOF\n")


def test_flags_of_copy_and_from():
    ins = parse("FROM --platform=linux/amd64 busybox\nCOPY --from=0 --chown=1:2 a b /c/\n")
    assert ins[0].flags == {"platform": "linux/amd64"} and ins[0].args == "busybox"
    assert ins[1].flags == {"from": "0", "chown": "1:2"} and ins[1].args == "a b /c/"


@pytest.mark.parametrize("word, expected", [
    ("$A", "1"), ("${A}x", "1x"), ("${NOPE:-dflt}", "dflt"), ("${A:+alt}", "alt"),
    ("${EMPTY:-e}", "e"), ("${EMPTY-e}", ""), ("'$A'", "$A"), ('"$A b"', "1 b"),
    ("\\$A", "$A"), ("a\\ b", "a b"), ("$", "$"),
])
def test_word_expansion_as_the_shell_lexer(word, expected):
    assert expand_word(word, {"A": "1", "EMPTY": ""}) == expected


def test_words_split_outside_quotes():
    assert expand_words('a "b c" $X', {"X": "d e"}) == ["a", "b c", "d e"]


def test_env_forms():
    assert key_values('A=1 B="two words" C=$A', {"A": "0"}, "ENV") == [
        ("A", "1"), ("B", "two words"), ("C", "0")]
    assert key_values("KEY the rest of it", {}, "ENV") == [("KEY", "the rest of it")]


def test_commit_changes_apply_and_refuse_like_docker():
    out = apply_changes({"Env": ["PATH=/bin"], "Cmd": ["sh"]},
                        ["ENV A=1", 'CMD ["cat","/hello"]', "EXPOSE 80", "LABEL k=v",
                         "WORKDIR /srv", "USER nobody", "VOLUME /data"])
    assert out["Env"] == ["PATH=/bin", "A=1"] and out["Cmd"] == ["cat", "/hello"]
    assert out["ExposedPorts"] == {"80/tcp": {}} and out["Labels"] == {"k": "v"}
    assert out["WorkingDir"] == "/srv" and out["User"] == "nobody"
    assert out["Volumes"] == {"/data": {}}
    with pytest.raises(InvalidParameter, match="^copy is not a valid change command$"):
        apply_changes({}, ["COPY a b"])


def test_healthcheck_is_recorded_as_docker_records_it():
    config: dict = {}
    text = apply_metadata(config, parse(
        "HEALTHCHECK --interval=5m --timeout=3s --retries=3 CMD curl -f http://x/ || exit 1")[0],
        {})
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "curl -f http://x/ || exit 1"],
                                     "Interval": 300 * 10**9, "Timeout": 3 * 10**9,
                                     "Retries": 3}
    assert text == ('HEALTHCHECK &{["CMD-SHELL" "curl -f http://x/ || exit 1"] "5m0s" "3s" '
                    "\"0s\" '\\x03'}")
    with pytest.raises(DockerfileError, match='Unknown type "PING" in HEALTHCHECK'):
        apply_metadata({}, parse("HEALTHCHECK PING x")[0], {})


# -- .dockerignore: cases of docker's fileutils tests ------------------------------------------


@pytest.mark.parametrize("patterns, path, excluded", [
    (["*.go"], "file.go", True),
    (["*.go"], "dir/file.go", False),
    (["**/*.go"], "dir/sub/file.go", True),
    (["**"], "anything/at/all", True),
    (["dir"], "dir/inside/file", True),  # below a matching directory
    (["dir/**/x"], "dir/x", True),
    (["*", "!keep.txt"], "keep.txt", False),
    (["*", "!keep.txt"], "other.txt", True),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["/abs/path"], "abs/path", True),  # a leading / is the context's root
    (["a?c"], "abc", True),
    (["a?c"], "a/c", False),
    (["[a-c]x"], "bx", True),
    (["./dir/../file"], "file", True),  # cleaned as filepath.Clean does
])
def test_dockerignore_matching(patterns, path, excluded):
    assert Matcher(read_patterns("\n".join(patterns))).excluded(path) is excluded


def test_dockerignore_comments_and_blank_lines():
    assert read_patterns("# comment\n\n  spaced  \n!  keep\n") == ["spaced", "!keep"]
