"""A build's context: the tar a client sends, unpacked safely, minus what ``.dockerignore``
excludes — patterns as docker's ``fileutils.PatternMatcher`` reads them (Go's
``filepath.Match`` syntax, ``**`` for any number of directories, ``!`` for exceptions, the
last matching pattern deciding, a pattern also excluding what is below a matching
directory).

The context is extracted with the image store's extractor (``resolve_in_root``): a hostile
tar cannot write outside the context directory. The CLI uses ``Matcher`` too, to leave out
of the tar what the daemon would drop anyway.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import tarfile

from logpipe.errors import InvalidParameter

from runtime.layer_tar import InvalidImage, LayerExtractor, open_tar, tar_members

DOCKERIGNORE = ".dockerignore"


class _Pattern:
    def __init__(self, text: str) -> None:
        self.exclusion = text.startswith("!")
        cleaned = text[1:] if self.exclusion else text
        self.text = cleaned
        self.dirs = cleaned.split("/")
        self.regex = re.compile(_to_regex(cleaned))

    def match(self, path: str) -> bool:
        return self.regex.match(path) is not None


def _to_regex(pattern: str) -> str:
    """fileutils' translation of one pattern into a regular expression."""
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < len(pattern) and pattern[i] == "*":
                i += 1
                if i < len(pattern) and pattern[i] == "/":
                    i += 1
                out += ".*" if i >= len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch in ".$+(){}|^":
            out += "\\" + ch
        elif ch == "\\":
            if i < len(pattern):
                out += "\\" + pattern[i]
                i += 1
            else:
                out += "\\\\"
        else:
            out += ch
    return out + "$"


def read_patterns(text: str) -> list[str]:
    """``.dockerignore`` lines as docker's ``dockerignore.ReadAll`` cleans them."""
    patterns = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = posixpath.normpath(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append(("!" if invert else "") + line)
    return patterns


class Matcher:
    """Whether a context path (relative, ``/``-separated) is excluded."""

    def __init__(self, patterns: list[str]) -> None:
        try:
            self.patterns = [_Pattern(p) for p in patterns if p not in ("", "!")]
        except re.error as err:
            raise InvalidParameter(f"Illegal exclusion pattern: {err}") from None

    def excluded(self, path: str) -> bool:
        matched = False
        parent = posixpath.dirname(path) or "."
        parent_dirs = parent.split("/")
        for p in self.patterns:
            match = p.match(path)
            if not match and parent != "." and len(p.dirs) <= len(parent_dirs):
                match = p.match("/".join(parent_dirs[:len(p.dirs)]))
            if match:
                matched = not p.exclusion
        return matched


def load_matcher(context: str) -> Matcher:
    try:
        with open(os.path.join(context, DOCKERIGNORE), encoding="utf-8", errors="replace") as f:
            return Matcher(read_patterns(f.read()))
    except FileNotFoundError:
        return Matcher([])


def extract_context(src: str, dest: str, dockerfile: str) -> None:
    """Unpack the context tar (optionally gzip/bzip2/xz-compressed) at ``src`` into ``dest``;
    a body that is no archive is the Dockerfile itself (``docker build - < Dockerfile``, as
    the daemon's ``remotecontext`` detects it)."""
    with open(src, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return
        try:
            tar = open_tar(f, "the build context")
        except InvalidImage:
            f.seek(0)
            with open(os.path.join(dest, os.path.basename(dockerfile)), "wb") as out:
                shutil.copyfileobj(f, out)
            return
        members = tar_members(tar, "the build context")
        ex = LayerExtractor(dest)
        ex.extract(tar, members, lambda: None)
        ex.finish_dirs()


def apply_dockerignore(context: str) -> None:
    """Delete what ``.dockerignore`` excludes (a directory stays while something in it is
    kept by an exception); the Dockerfile and ``.dockerignore`` are read before, and go
    too when excluded, as the daemon's ``remotecontext`` does."""
    matcher = load_matcher(context)
    if not matcher.patterns:
        return
    for dirpath, dirs, files in os.walk(context, topdown=False):
        rel_dir = os.path.relpath(dirpath, context)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if matcher.excluded(rel):
                os.unlink(os.path.join(dirpath, name))
        if rel_dir != "." and matcher.excluded(rel_dir) and not os.listdir(dirpath):
            os.rmdir(dirpath)


def context_tar(path: str, out, dockerfile: str = "", outside: str | None = None) -> None:
    """The CLI's side: the directory ``path`` as a tar on ``out``, without what
    ``.dockerignore`` excludes (the Dockerfile and ``.dockerignore`` always go); a
    Dockerfile from ``outside`` the context is added under the name ``dockerfile``."""
    matcher = load_matcher(path)
    always = {DOCKERIGNORE, os.path.normpath(dockerfile or "Dockerfile")}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        if outside is not None:
            try:
                info = tar.gettarinfo(outside, dockerfile)
                with open(outside, "rb") as f:
                    tar.addfile(info, f)
            except OSError as err:
                raise InvalidParameter(f"unable to prepare context: {err}") from None
        for dirpath, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files + dirs):
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, path)
                if rel not in always and matcher.excluded(rel) and not (
                        os.path.isdir(full) and any(p.exclusion for p in matcher.patterns)):
                    if os.path.isdir(full) and not os.path.islink(full):
                        dirs.remove(name)
                    continue
                info = tar.gettarinfo(full, rel)
                info.uname = info.gname = ""
                if info.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)

