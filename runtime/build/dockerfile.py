"""Dockerfiles: parsed as moby's ``parser`` and ``instructions`` packages read them, and the
words of an instruction expanded as its ``shell.Lex`` does.

Parsing: the ``# escape=`` (and ``# syntax=``) directives at the top, comment lines dropped
(also inside a continuation), the escape character at the end of a line continuing it,
instruction names in any case, and the JSON (exec) form of RUN, CMD, ENTRYPOINT, SHELL,
COPY, ADD and VOLUME. Heredocs (``<<EOF``, BuildKit only) are refused, as Docker's classic
builder refuses them.

Expansion: ``$VAR``, ``${VAR}``, ``${VAR:-word}``, ``${VAR:+word}`` (and without the
colon), quotes and the escape character, in the instructions Docker expands (ADD, COPY, ENV,
EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR, ARG); RUN, CMD and ENTRYPOINT are
left to the shell. Nothing here runs anything: ``runtime.build.builder`` does.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from logpipe.errors import InvalidParameter

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"<<-?\s*['\"]?[A-Za-z_][A-Za-z0-9_]*")
#: Instructions with a JSON form.
_JSON_FORM = {"run", "cmd", "entrypoint", "shell", "copy", "add", "volume"}
KNOWN = {"from", "run", "cmd", "entrypoint", "env", "arg", "workdir", "user", "expose",
         "label", "volume", "shell", "stopsignal", "copy", "add", "maintainer", "onbuild",
         "healthcheck"}


class DockerfileError(InvalidParameter):
    """The Dockerfile cannot be read (HTTP 400, Docker's wording where it has one)."""


class Instruction(NamedTuple):
    """One instruction: its name (lower case), the text after it, its ``--flags``, its
    arguments (a list for the JSON form, else the raw text), and the line as written."""

    name: str
    original: str
    flags: dict[str, str]
    args: list[str] | str
    json_form: bool
    line: int


def parse(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, in order."""
    lines = text.replace("\r\n", "\n").split("\n")
    escape = "\\"
    start = 0
    for i, line in enumerate(lines):
        m = _DIRECTIVE.match(line)
        if not m:
            break
        if m.group(1).lower() == "escape":
            if m.group(2) not in ("\\", "`"):
                raise DockerfileError(f"invalid ESCAPE '{m.group(2)}'. Must be ` or \\")
            escape = m.group(2)
        start = i + 1
    out: list[Instruction] = []
    buf: list[str] = []
    first = 0
    for number, raw in enumerate(lines[start:], start + 1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue
        if not buf:
            if not stripped:
                continue
            first = number
        body = raw.rstrip()
        if body.endswith(escape):
            buf.append(body[:-1])
            continue
        buf.append(raw)
        out.append(_instruction("".join(buf).strip(), first))
        buf = []
    if buf and "".join(buf).strip():
        out.append(_instruction("".join(buf).strip(), first))
    return out


def _instruction(text: str, line: int) -> Instruction:
    name, _, rest = text.partition(" ")
    if "\t" in name:
        name, _, more = name.partition("\t")
        rest = more + " " + rest
    lname = name.lower()
    rest = rest.strip()
    if lname not in KNOWN:
        raise DockerfileError(f"dockerfile parse error line {line}: unknown instruction: "
                              f"{name.upper()}")
    if lname in ("run", "copy", "add") and _HEREDOC.search(rest) and not rest.startswith("["):
        raise DockerfileError(f"dockerfile parse error line {line}: heredocs are only "
                              "supported with BuildKit")
    flags: dict[str, str] = {}
    if lname in ("from", "copy", "add", "run", "healthcheck"):
        while rest.startswith("--"):
            word, _, rest = rest.partition(" ")
            key, eq, value = word[2:].partition("=")
            flags[key] = value if eq else "true"
            rest = rest.strip()
    args: list[str] | str = rest
    json_form = False
    if lname in _JSON_FORM and rest.startswith("["):
        try:
            parsed = json.loads(rest)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(a, str) for a in parsed):
            args, json_form = parsed, True
    return Instruction(lname, text, flags, args, json_form, line)


# -- word expansion (moby's shell.Lex) ---------------------------------------------------------


class _Lexer:
    def __init__(self, text: str, env: dict[str, str], escape: str = "\\") -> None:
        self.s, self.i, self.env, self.esc = text, 0, env, escape

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def next(self) -> str:
        ch = self.peek()
        self.i += 1
        return ch

    def words(self, split: bool) -> list[str]:
        """The words (one if not ``split``), quotes removed, variables expanded."""
        words: list[str] = []
        word: list[str] = []
        started = False
        while self.i < len(self.s):
            ch = self.next()
            if split and ch.isspace():
                if started:
                    words.append("".join(word))
                    word, started = [], False
                continue
            started = True
            if ch == "'":
                while self.peek() not in ("'", ""):
                    word.append(self.next())
                self.next()
            elif ch == '"':
                while self.peek() not in ('"', ""):
                    c = self.next()
                    if c == self.esc and self.peek() in ('"', "$", self.esc):
                        word.append(self.next())
                    elif c == "$":
                        word.append(self.variable())
                    else:
                        word.append(c)
                self.next()
            elif ch == self.esc:
                if self.peek():
                    word.append(self.next())
            elif ch == "$":
                word.append(self.variable())
            else:
                word.append(ch)
        if started:
            words.append("".join(word))
        return words

    def variable(self) -> str:
        if self.peek() == "{":
            self.next()
            name = self._name()
            if self.peek() == "}":
                self.next()
                return self.env.get(name, "")
            colon = self.peek() == ":"
            if colon:
                self.next()
            op = self.next()
            depth, word = 0, []
            while self.peek():
                c = self.next()
                if c == "{":
                    depth += 1
                elif c == "}":
                    if depth == 0:
                        break
                    depth -= 1
                word.append(c)
            alt = _Lexer("".join(word), self.env, self.esc).words(split=False)
            alt_text = alt[0] if alt else ""
            value = self.env.get(name)
            unset = value is None or (colon and value == "")
            if op == "-":
                return alt_text if unset else value
            if op == "+":
                return "" if unset else alt_text
            if op == "?":
                if unset:
                    raise DockerfileError(f"{name}: {alt_text or 'is not allowed to be unset'}")
                return value
            raise DockerfileError(f"unsupported modifier ({op}) in substitution")
        name = self._name()
        if not name:
            return "$"
        return self.env.get(name, "")

    def _name(self) -> str:
        start = self.i
        if self.peek().isdigit():
            self.next()
            return self.s[start:self.i]
        while self.peek() and (self.peek().isalnum() or self.peek() == "_"):
            self.next()
        return self.s[start:self.i]


def expand_word(text: str, env: dict[str, str]) -> str:
    """One word (ENV's value, WORKDIR's path): quotes removed, variables expanded."""
    words = _Lexer(text, env).words(split=False)
    return words[0] if words else ""


def expand_words(text: str, env: dict[str, str]) -> list[str]:
    """Whitespace-separated words (EXPOSE, COPY's sources), each expanded."""
    return _Lexer(text, env).words(split=True)


def key_values(args: str, env: dict[str, str], what: str) -> list[tuple[str, str]]:
    """ENV's and LABEL's ``k=v k2="v 2"`` pairs, or the old ``ENV k the value`` form."""
    raw = _split_raw(args)
    if not raw:
        raise DockerfileError(f"{what} requires at least one argument")
    if "=" not in raw[0]:
        if what == "LABEL":
            raise DockerfileError("LABEL requires at least one argument" if len(raw) < 2
                                  else "Syntax error - can't find = in \"" + raw[0]
                                  + "\". Must be of the form: name=value")
        if len(raw) < 2:
            raise DockerfileError(f"{what} must have two arguments")
        name, _, value = args.strip().partition(" ")
        return [(expand_word(name, env), expand_word(value.strip(), env))]
    pairs = []
    for word in raw:
        if "=" not in word:
            raise DockerfileError(f"Syntax error - can't find = in \"{word}\". Must be of "
                                  "the form: name=value")
        k, _, v = word.partition("=")
        pairs.append((expand_word(k, env), expand_word(v, env)))
    return pairs


def _split_raw(text: str) -> list[str]:
    """Words split at unquoted whitespace, quotes kept (expanded later, one by one)."""
    words, word, quote, i = [], [], "", 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            word.append(text[i:i + 2])
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch.isspace():
            if word:
                words.append("".join(word))
                word = []
            i += 1
            continue
        word.append(ch)
        i += 1
    if word:
        words.append("".join(word))
    return words


# -- config changes (commit --change, and the build's metadata instructions) --------------


def shell_or_exec(ins: Instruction, shell: list[str]) -> list[str]:
    """RUN, CMD and ENTRYPOINT: the JSON form as is, the shell form behind the SHELL."""
    if ins.json_form:
        return list(ins.args)
    return list(shell) + [ins.args]


def set_env(env: list[str], key: str, value: str) -> list[str]:
    """Env with ``key`` set (replaced in place, as Docker keeps the order)."""
    out = [e for e in env]
    for i, e in enumerate(out):
        if e.split("=", 1)[0] == key:
            out[i] = f"{key}={value}"
            return out
    return out + [f"{key}={value}"]


def env_map(env: list[str] | None) -> dict[str, str]:
    return dict(e.split("=", 1) if "=" in e else (e, "") for e in env or [])


def normalize_port(port: str) -> str:
    num, _, proto = port.partition("/")
    proto = (proto or "tcp").lower()
    if not num or not all(p.isdigit() for p in num.split("-")) or proto not in (
            "tcp", "udp", "sctp"):
        raise DockerfileError(f"Invalid containerPort: {port}")
    return f"{num}/{proto}"


#: What ``commit --change`` accepts (moby's ``validCommitCommands``).
COMMIT_CHANGES = {"cmd", "entrypoint", "env", "expose", "label", "onbuild", "user", "volume",
                  "workdir", "stopsignal", "healthcheck"}
DEFAULT_SHELL = ["/bin/sh", "-c"]


def apply_metadata(config: dict[str, Any], ins: Instruction, env: dict[str, str],
                   cmd_set: bool = False) -> str:
    """Apply a metadata instruction to ``config`` (Docker's container config); returns the
    text Docker records for it in the history (after ``#(nop) ``). ``cmd_set``: a CMD came
    earlier in this stage (else a new ENTRYPOINT drops the base image's CMD, as Docker)."""
    shell = config.get("Shell") or DEFAULT_SHELL
    name = ins.name
    if name == "env":
        pairs = key_values(ins.args, env, "ENV")
        for k, v in pairs:
            config["Env"] = set_env(config.get("Env") or [], k, v)
            env[k] = v
        return "ENV " + " ".join(f"{k}={v}" for k, v in pairs)
    if name == "label":
        pairs = key_values(ins.args, env, "LABEL")
        config["Labels"] = {**(config.get("Labels") or {}), **dict(pairs)}
        return "LABEL " + " ".join(f"{k}={v}" for k, v in pairs)
    if name in ("cmd", "entrypoint"):
        value = shell_or_exec(ins, shell) if ins.args != "" or ins.json_form else None
        if name == "cmd":
            config["Cmd"] = value
        else:
            config["Entrypoint"] = value
            if not cmd_set:
                config["Cmd"] = None
        return f"{name.upper()} " + go_quote_list(value or [])
    if name == "workdir":
        path = expand_word(ins.args, env)
        if not path:
            raise DockerfileError("WORKDIR requires exactly one argument")
        import posixpath

        config["WorkingDir"] = posixpath.normpath(posixpath.join(
            config.get("WorkingDir") or "/", path))
        return "WORKDIR " + config["WorkingDir"]
    if name == "user":
        config["User"] = expand_word(ins.args, env)
        return "USER " + config["User"]
    if name == "expose":
        ports = expand_words(ins.args, env)
        if not ports:
            raise DockerfileError("EXPOSE requires at least one argument")
        config["ExposedPorts"] = {**(config.get("ExposedPorts") or {}),
                                  **{normalize_port(p): {} for p in ports}}
        return "EXPOSE " + " ".join(ports)
    if name == "volume":
        vols = list(ins.args) if ins.json_form else expand_words(ins.args, env)
        if not vols or any(not v.strip() for v in vols):
            raise DockerfileError("VOLUME specified can not be an empty string")
        config["Volumes"] = {**(config.get("Volumes") or {}), **{v: {} for v in vols}}
        return "VOLUME [" + " ".join(vols) + "]"
    if name == "stopsignal":
        config["StopSignal"] = expand_word(ins.args, env)
        return "STOPSIGNAL " + config["StopSignal"]
    if name == "shell":
        if not ins.json_form:
            raise DockerfileError("SHELL requires the arguments to be in JSON form")
        config["Shell"] = list(ins.args)
        return "SHELL [" + " ".join(ins.args) + "]"
    if name == "onbuild":
        config["OnBuild"] = (config.get("OnBuild") or []) + [ins.args]
        return "ONBUILD " + ins.args
    if name == "healthcheck":
        config["Healthcheck"] = healthcheck(ins)
        return "HEALTHCHECK " + _healthcheck_text(config["Healthcheck"])
    if name == "maintainer":
        return "MAINTAINER " + ins.args
    raise DockerfileError(f"{ins.name} is not a metadata instruction")


_HEALTH_FLAGS = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod"}


def healthcheck(ins: Instruction) -> dict[str, Any]:
    """HEALTHCHECK's ``container.HealthConfig``: ``NONE``, or ``CMD`` (exec form, or the
    shell form as ``CMD-SHELL``) with its durations in ns; stored in the image's config.
    logpipe records it; it does not run health checks."""
    from logpipe.units import parse_duration

    kind, _, rest = ins.args.strip().partition(" ") if isinstance(ins.args, str) else ("", "", "")
    rest = rest.strip()
    if not kind:
        raise DockerfileError("HEALTHCHECK requires at least one argument")
    if kind.upper() == "NONE":
        if rest or ins.flags:
            raise DockerfileError("HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    if kind.upper() != "CMD":
        raise DockerfileError(f'Unknown type "{kind.upper()}" in HEALTHCHECK (try CMD)')
    if not rest:
        raise DockerfileError("Missing command after HEALTHCHECK CMD")
    try:
        parsed = json.loads(rest) if rest.startswith("[") else None
    except ValueError:
        parsed = None
    test = (["CMD", *parsed] if isinstance(parsed, list) and all(isinstance(a, str)
                                                                 for a in parsed)
            else ["CMD-SHELL", rest])
    out: dict[str, Any] = {"Test": test}
    for flag, value in ins.flags.items():
        if flag == "retries":
            if not value.lstrip("-").isdigit() or int(value) < 0:
                raise DockerfileError("--retries cannot be negative")
            out["Retries"] = int(value)
        elif flag in _HEALTH_FLAGS:
            try:
                ns = parse_duration(value)
            except ValueError as err:
                raise DockerfileError(str(err)) from None
            if 0 < ns < 10**6 or ns < 0:
                raise DockerfileError(f"{_HEALTH_FLAGS[flag]} \"--{flag}\" cannot be less "
                                      "than 1ms")
            out[_HEALTH_FLAGS[flag]] = ns
        else:
            raise DockerfileError(f"Unknown flag: {flag}")
    return out


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String``: ``0s``, ``500ms``, ``30s``, ``5m0s``, ``1h0m0s``."""
    if ns == 0:
        return "0s"
    if ns < 10**9:
        for unit, div in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if ns >= div:
                return f"{ns / div:.9f}".rstrip("0").rstrip(".") + unit
    hours, rem = divmod(ns, 3600 * 10**9)
    minutes, rem = divmod(rem, 60 * 10**9)
    secs = f"{rem / 10**9:.9f}".rstrip("0").rstrip(".")
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + \
        f"{secs}s"


_RUNE_ESCAPES = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r"}


def _healthcheck_text(h: dict[str, Any]) -> str:
    """Go's ``%q`` of the HealthConfig, as Docker's history shows it:
    ``&{["CMD-SHELL" "curl -f http://x/"] "30s" "3s" "0s" '\\x03'}``."""
    retries = h.get("Retries", 0)
    rune = _RUNE_ESCAPES.get(retries) or (chr(retries) if 32 <= retries < 127 and retries != 39
                                          else f"\\x{retries:02x}")
    return ("&{" + go_quote_list(h["Test"]) + " " + " ".join(
        f'"{go_duration(h.get(k, 0))}"' for k in ("Interval", "Timeout", "StartPeriod"))
        + f" '{rune}'}}")


def go_quote_list(items: list[str]) -> str:
    """Go's ``%q`` of a string slice: ``["sh" "-c" "echo hi"]``."""
    return "[" + " ".join(json.dumps(s, ensure_ascii=False) for s in items) + "]"


def apply_changes(config: dict[str, Any], changes: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``commit --change``: Dockerfile instructions applied to a container config; any other
    instruction refused with Docker's text."""
    config = dict(config)
    for text in changes:
        for ins in parse(text):
            if ins.name not in COMMIT_CHANGES:
                raise InvalidParameter(f"{ins.name} is not a valid change command")
            apply_metadata(config, ins, env_map(config.get("Env")))
    return config
