"""``docker build`` with Docker's classic builder: one step per instruction, each step an image.

Size: longer than 500 lines because the instructions share one state machine (a stage's
config, its ARGs, the cache probe before each step and the commit after it) that reads best
in one place; parsing is ``dockerfile``, the context ``context``, the cache ``cache``,
COPY's and ADD's files ``copying``.

What a step prints and records is Docker's (``builder/dockerfile`` of moby 20.10): ``Step
N/M : <instruction>``, `` ---> Using cache`` or `` ---> Running in <container>``, the
RUN's output, ``Removing intermediate container``, `` ---> <image>``; each step's image is
an untagged child of the previous one whose ``container_config`` (the step's ``Cmd``:
``/bin/sh -c #(nop)  ENV A=1``, ``/bin/sh -c #(nop) COPY file:<sum> in /dst ``,
``/bin/sh -c <the RUN>``) is what the cache matches on.

RUN runs in a real container of the daemon's store (create, start, wait: the runtime, the
log driver ``json-file``, the network as any container); its output is followed in its log
and streamed to the client; its overlay's upper directory becomes the step's layer. A
metadata step (ENV, CMD, ...) changes no file: its layer is empty (``empty_layer``) and no
container is run for it, though the id printed after ``Running in`` stands for one, as
Docker's output has it.

The builder never writes the store's files itself: ``runtime.commit.new_image`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import posixpath
import shutil
import tempfile
import threading
from typing import Any, Awaitable, Callable, NamedTuple

from logpipe.errors import InvalidParameter, LogpipeError, NotFound

from runtime.build.cache import find_cached
from runtime.build.dockerfile import (DEFAULT_SHELL, DockerfileError, Instruction,
                                      apply_metadata, env_map, expand_word, expand_words,
                                      parse, shell_or_exec)
from runtime.build.copying import (checksum, expand_sources, make_dirs, owner,
                                   stage_copy)
from runtime.commit import Child, new_image
from runtime.executors import get_executor
from runtime.images import Image

log = logging.getLogger("logpipe.daemon")

Emit = Callable[[dict[str, Any]], Awaitable[None]]
#: Docker's predefined ARGs: usable without an ARG line, kept out of the cache and history.
PROXY_ARGS = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
                        "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"})


class BuildError(LogpipeError):
    """A step failed; ``code`` goes to the client's ``errorDetail`` (a RUN's exit status)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class BuildCancelled(LogpipeError):
    """The client went away: the build stops and cleans up."""


class BuildOptions(NamedTuple):
    tags: tuple[str, ...] = ()
    dockerfile: str = "Dockerfile"
    buildargs: dict[str, str | None] = {}
    nocache: bool = False
    target: str = ""
    quiet: bool = False
    rm: bool = True
    forcerm: bool = False
    labels: dict[str, str] = {}
    network: str = ""
    #: credentials for pulling a missing base image, by registry (``X-Registry-Config``)
    registry_auth: dict[str, Any] = {}


class Stage:
    """One ``FROM`` and what follows it, as it is being built."""

    def __init__(self, name: str, index: int) -> None:
        self.name, self.index = name, index
        self.image: Image | None = None
        self.config: dict[str, Any] = {}
        self.args: dict[str, str | None] = {}  # ARGs declared in this stage
        self.cmd_set = False

    def env(self) -> dict[str, str]:
        """What ``$VAR`` means in this stage: ARG values, overridden by ENV."""
        out = {k: v for k, v in self.args.items() if v is not None}
        out.update(env_map(self.config.get("Env")))
        return out


class Builder:
    def __init__(self, store, context: str, opts: BuildOptions, emit: Emit,
                 gone: Callable[[], bool]) -> None:
        self.store = store
        self.images = store.images
        self.context = context
        self.opts = opts
        self._emit = emit
        self.gone = gone
        self.stages: list[Stage] = []
        self.used_args: set[str] = set()
        self.meta_args: dict[str, str | None] = {}
        self.containers: list[str] = []  # intermediate containers still to remove

    async def out(self, text: str) -> None:
        if not self.opts.quiet:
            await self._emit({"stream": text})

    # -- the whole build ------------------------------------------------------------------

    async def run(self, dockerfile_text: str) -> Image:
        """Build every step of the Dockerfile (up to ``--target``); the final image."""
        meta, stages = self.plan(dockerfile_text)
        total = len(meta) + sum(len(s) for s in stages)
        step = 0
        for ins in meta:  # ARGs before the first FROM: for the FROMs only
            step += 1
            await self.out(f"Step {step}/{total} : {ins.original}\n")
            known = {k: v for k, v in self.meta_args.items() if v is not None}
            for name, value in _arg_pairs(ins, known):
                self.meta_args[name] = self.opts.buildargs.get(name, value)
                self.used_args.add(name)
        try:
            for index, body in enumerate(stages):
                stage = Stage(_stage_name(body[0]), index)
                self.stages.append(stage)
                for ins in body:
                    step += 1
                    await self.out(f"Step {step}/{total} : {ins.original}\n")
                    await self.dispatch(stage, ins)
                    await self.out(f" ---> {stage.image.short_id if stage.image else ''}\n")
        finally:
            await self.remove_containers(failed=True)
        final = self.stages[-1].image
        if final is None:
            raise BuildError("No image was generated. Is your Dockerfile empty?")
        unused = sorted(k for k in self.opts.buildargs
                        if k not in self.used_args and k not in PROXY_ARGS)
        if unused:
            await self.out(f"[Warning] One or more build-args [{' '.join(unused)}] were not "
                           "consumed\n")
        return final

    def plan(self, dockerfile_text: str) -> tuple[list[Instruction], list[list[Instruction]]]:
        """The ARGs before the first FROM, and the stages up to ``--target``."""
        if self.opts.labels:  # Docker appends them as one more LABEL instruction
            dockerfile_text += "\nLABEL " + " ".join(
                f"{json.dumps(k)}='{v}'" for k, v in self.opts.labels.items()) + "\n"
        instructions = parse(dockerfile_text)
        meta = []
        while instructions and instructions[0].name == "arg":
            meta.append(instructions.pop(0))
        if not instructions:
            raise DockerfileError("file with no instructions")
        if instructions[0].name != "from":
            raise DockerfileError(f"Please provide a source image with `from` prior to "
                                  f"{instructions[0].name}")
        stages = _split_stages(instructions)
        if self.opts.target:
            names = [_stage_name(s[0]) for s in stages]
            if self.opts.target.lower() not in names:
                raise InvalidParameter(f"failed to reach build target {self.opts.target} in "
                                       "Dockerfile")
            stages = stages[:names.index(self.opts.target.lower()) + 1]
        return meta, stages

    async def discard(self, c) -> None:
        """Remove a step's container even while the build is being cancelled (shielded:
        a second cancellation does not stop the removal half-way)."""
        task = asyncio.ensure_future(self.store.remove(c, force=True))
        try:
            await asyncio.shield(task)
        except LogpipeError as err:
            log.warning("removing build container %s: %s", c.id[:12], err)
        if c.id in self.containers:
            self.containers.remove(c.id)

    async def remove_containers(self, failed: bool = False) -> None:
        """``rm`` removes what succeeded; a failed step's container stays unless
        ``forcerm`` (Docker's classic builder keeps it to be looked at)."""
        for cid in list(self.containers):
            try:
                c = self.store.get(cid)
            except LogpipeError:
                self.containers.remove(cid)
                continue
            if failed and not self.opts.forcerm:
                continue
            await self.store.remove(c, force=True)
            self.containers.remove(cid)
            with contextlib.suppress(BuildCancelled):  # a cancelled build still cleans up
                await self.out(f"Removing intermediate container {cid[:12]}\n")

    # -- one instruction ------------------------------------------------------------------

    async def dispatch(self, stage: Stage, ins: Instruction) -> None:
        if self.gone():
            raise BuildCancelled("the client went away: build cancelled")
        if ins.name == "from":
            return await self.do_from(stage, ins)
        if ins.name == "run":
            return await self.do_run(stage, ins)
        if ins.name in ("copy", "add"):
            return await self.do_copy(stage, ins)
        if ins.name == "arg":
            return await self.do_arg(stage, ins)
        if ins.name == "workdir":
            return await self.do_workdir(stage, ins)
        config = dict(stage.config)
        text = apply_metadata(config, ins, stage.env(), stage.cmd_set)
        if ins.name == "cmd":
            stage.cmd_set = True
        await self.commit(stage, config, _nop(config, text, two_spaces=True), None)

    async def do_from(self, stage: Stage, ins: Instruction) -> None:
        words = expand_words(ins.args, {k: v for k, v in self.meta_args.items()
                                        if v is not None})
        if not words:
            raise DockerfileError("FROM requires either one or three arguments")
        ref = words[0]
        earlier = {s.name: s for s in self.stages[:-1] if s.name}
        if ref.lower() in earlier:
            stage.image = earlier[ref.lower()].image
        elif ref.lower() == "scratch":
            stage.image = None
        else:
            try:
                stage.image = self.images.resolve(ref)
            except NotFound:
                stage.image = await self.pull_base(ref)
        stage.config = dict(stage.image.config) if stage.image else {}
        stage.config.pop("_created", None)

    async def pull_base(self, ref: str) -> Image:
        """A base image that is not here is pulled, as Docker's classic builder does: its
        progress goes into the build's stream; a refusal ends the build with the
        registry's words (``pull access denied for …``)."""
        from runtime.registry import reference
        from runtime.registry.auth import NONE, server_key
        from runtime.registry.pull import pull

        parsed = reference.parse(ref)  # Docker's "invalid reference format" if it is not one
        cfg = self.store.config
        creds = self.opts.registry_auth.get(server_key(parsed.domain), NONE)
        return await pull(self.images, parsed, creds, self._emit,
                          insecure=cfg.insecure_registries, mirrors=cfg.registry_mirrors)

    async def do_arg(self, stage: Stage, ins: Instruction) -> None:
        pairs = _arg_pairs(ins, stage.env())
        texts = []
        for name, default in pairs:
            if name in self.opts.buildargs:
                value = self.opts.buildargs[name]
            elif default is None and name in self.meta_args:
                value = self.meta_args[name]
            else:
                value = default
            stage.args[name] = value
            self.used_args.add(name)
            texts.append(name if default is None else f"{name}={default}")
        config = dict(stage.config)
        await self.commit(stage, config, _nop(config, "ARG " + " ".join(texts), True), None)

    def run_args(self, stage: Stage) -> list[str]:
        """The ``K=V`` of the stage's ARGs a RUN sees, not already set by ENV (sorted)."""
        env_keys = set(env_map(stage.config.get("Env")))
        return [f"{k}={v}" for k, v in sorted(stage.args.items())
                if v is not None and k not in env_keys and k not in PROXY_ARGS]

    async def do_run(self, stage: Stage, ins: Instruction) -> None:
        if ins.flags:
            raise BuildError(f"the --{next(iter(ins.flags))} option requires BuildKit")
        if stage.image is None:
            raise BuildError("RUN needs an image with a shell: this stage is FROM scratch")
        cmd = shell_or_exec(ins, stage.config.get("Shell") or DEFAULT_SHELL)
        args = self.run_args(stage)
        save_cmd = [f"|{len(args)}", *args, *cmd] if args else cmd
        probe = {**stage.config, "Cmd": save_cmd, "Image": stage.image.id}
        if await self.probe_cache(stage, probe):
            return
        proxies = [f"{k}={v}" for k, v in self.opts.buildargs.items()
                   if k in PROXY_ARGS and v is not None]
        body = {"Image": stage.image.id, "Cmd": cmd, "Entrypoint": [],
                "Env": (stage.config.get("Env") or []) + args + proxies,
                "WorkingDir": stage.config.get("WorkingDir") or "",
                "User": stage.config.get("User") or "", "Labels": {},
                "HostConfig": {"LogConfig": {"Type": "json-file", "Config": {}},
                               "NetworkMode": self.opts.network or "default"}}
        c, _warnings = await self.store.create(body)
        self.containers.append(c.id)
        if not get_executor(c.spec.runtime).isolated:
            await self.discard(c)
            raise BuildError(f"RUN needs an isolated runtime: the {c.spec.runtime} runtime "
                             "would run it on the host (use runc)")
        try:
            await self.out(f" ---> Running in {c.id[:12]}\n")
            code = await self.run_container(c)
        except BaseException:
            await self.discard(c)  # cancelled: nothing is left behind, whatever ``rm`` says
            raise
        if code != 0:
            raise BuildError(f"The command '{' '.join(cmd)}' returned a non-zero code: {code}",
                             code)
        child = Child(config=_image_config(stage.config), container_config=probe,
                      created_by=" ".join(save_cmd), container=c.id)
        stage.image = await asyncio.to_thread(new_image, self.images, stage.image,
                                              os.path.join(c.spec.dir, "upper"), child)
        if self.opts.rm or self.opts.forcerm:
            await self.remove_containers()

    async def run_container(self, c) -> int:
        """Start ``c``, stream its log to the client while it runs, and its exit status."""
        from logpipe.reading import ReadConfig
        from logpipe.registry import load_driver

        exited = self.store.waiter(c, "next-exit")
        await self.store.start(c)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def follow() -> None:
            try:
                driver = load_driver(c.spec.log_type)
                for chunk in driver.read(c.spec.log_info(), ReadConfig(follow=True)):
                    loop.call_soon_threadsafe(queue.put_nowait, chunk.data)
                    if stop.is_set():
                        break
            except Exception as err:  # noqa: BLE001 - the RUN's status still decides
                log.warning("following the build step %s: %s", c.id[:12], err)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        reader = asyncio.ensure_future(asyncio.to_thread(follow))
        try:
            while True:
                get = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({get}, timeout=0.25)
                if not done:
                    get.cancel()
                    if self.gone():
                        raise BuildCancelled("the client went away: build cancelled")
                    if exited.done():
                        stop.set()
                        await asyncio.wait({reader}, timeout=5)
                        if reader.done():
                            continue
                        break
                    continue
                data = get.result()
                if data is None:
                    break
                await self.out(data.decode("utf-8", errors="replace"))
            state = await exited
        finally:
            stop.set()
        return state.exit_code

    async def do_workdir(self, stage: Stage, ins: Instruction) -> None:
        config = dict(stage.config)
        text = apply_metadata(config, ins, stage.env())
        probe = {**config, "Cmd": _shell(config) + ["#(nop) " + text], "Image": _id(stage)}
        if await self.probe_cache(stage, probe):
            stage.config = config
            return
        staging = tempfile.mkdtemp(dir=self.images.tmp, prefix="workdir-")
        try:
            made = make_dirs(staging, stage.image, config["WorkingDir"], None)
            step = await self.nop_container()
            child = Child(config=_image_config(config), container_config=probe,
                          created_by=" ".join(probe["Cmd"]))
            stage.image = await asyncio.to_thread(new_image, self.images, stage.image,
                                                  staging if made else None, child)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        stage.config = config
        await self.nop_container_done(step)

    # -- COPY / ADD -----------------------------------------------------------------------

    async def do_copy(self, stage: Stage, ins: Instruction) -> None:
        env = stage.env()
        words = list(ins.args) if ins.json_form else expand_words(ins.args, env)
        if ins.json_form:
            words = [expand_word(w, env) for w in words]
        name = ins.name.upper()
        if len(words) < 2:
            raise DockerfileError(f"{name} requires at least two arguments, but only one "
                                  "was provided. Destination could not be determined.")
        for flag in ins.flags:
            if flag not in ("from", "chown") or (flag == "from" and ins.name == "add"):
                raise BuildError(f"Unknown flag: {flag}")
        sources, dest = words[:-1], words[-1]
        written = dest  # what the history shows: the destination as the instruction has it
        root = self.source_root(ins.flags.get("from", ""))
        chown = owner(stage.image, expand_word(ins.flags["chown"], env)) \
            if ins.flags.get("chown") else (0, 0)
        slash = dest.endswith("/") or dest.endswith("/.") or dest in (".", "")
        # Normalised inside "/": ``..`` cannot climb out of the image (nor of the staging dir)
        dest = posixpath.normpath(posixpath.join("/", stage.config.get("WorkingDir") or "/",
                                                 dest))
        dest = dest.rstrip("/") + "/" if slash else dest
        files = expand_sources(root, sources, ins.name == "add", from_context=not ins.flags.get(
            "from"))
        is_dir_dest = dest.endswith("/")
        if len(files) > 1 and not is_dir_dest:
            raise BuildError(f"When using {name} with more than one source file, the "
                             "destination must be a directory and end with a /")
        kind = "multi" if len(files) > 1 else ("dir" if os.path.isdir(files[0]) and not
                                                os.path.islink(files[0]) else "file")
        digest = checksum(root, files)
        text = f"{name} {kind}:{digest} in {written} "
        if ins.flags.get("chown"):
            text = f"{name} --chown={ins.flags['chown']} {kind}:{digest} in {written} "
        config = dict(stage.config)
        probe = {**config, "Cmd": _shell(config) + ["#(nop) " + text], "Image": _id(stage)}
        if await self.probe_cache(stage, probe):
            return
        staging = tempfile.mkdtemp(dir=self.images.tmp, prefix="copy-")
        try:
            await asyncio.to_thread(stage_copy, staging, stage.image, files, dest,
                                    ins.name == "add", chown)
            child = Child(config=_image_config(config), container_config=probe,
                          created_by=" ".join(probe["Cmd"]))
            stage.image = await asyncio.to_thread(new_image, self.images, stage.image,
                                                  staging, child)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def source_root(self, ref: str) -> str:
        """Where COPY reads: the context, or ``--from``'s stage (name or index) or image."""
        if not ref:
            return self.context
        done = self.stages[:-1]
        for s in done:
            if s.name and s.name == ref.lower() or ref.isdigit() and int(ref) == s.index:
                if s.image is None:
                    raise BuildError(f"stage {ref} has no files (FROM scratch)")
                return s.image.rootfs
        if ref.isdigit():
            raise BuildError(f"invalid from flag value {ref}: refers to current build stage"
                             if int(ref) == len(done) else
                             f"invalid from flag value {ref}: index out of bounds")
        try:
            return self.images.resolve(ref).rootfs
        except NotFound:
            raise BuildError(f"invalid from flag value {ref}: No such image: {ref}") from None

    # -- cache and commit -----------------------------------------------------------------

    async def probe_cache(self, stage: Stage, probe: dict[str, Any]) -> bool:
        if self.opts.nocache:
            return False
        hit = await asyncio.to_thread(find_cached, self.images, _id(stage), probe)
        if hit is None:
            return False
        await self.out(" ---> Using cache\n")
        stage.image = hit
        stage.config = dict(hit.config)
        return True

    async def commit(self, stage: Stage, config: dict[str, Any], cmd: list[str],
                     changes: str | None) -> None:
        """A step's image: from the cache, else committed on top of the stage's image."""
        probe = {**config, "Cmd": cmd, "Image": _id(stage)}
        if await self.probe_cache(stage, probe):
            return
        step = await self.nop_container()
        child = Child(config=_image_config(config), container_config=probe,
                      created_by=" ".join(cmd))
        stage.image = await asyncio.to_thread(new_image, self.images, stage.image, changes,
                                              child)
        stage.config = config
        await self.nop_container_done(step)

    async def nop_container(self) -> str:
        """The lines Docker prints for the container of a metadata step (none is run)."""
        step = os.urandom(6).hex()
        await self.out(f" ---> Running in {step}\n")
        return step

    async def nop_container_done(self, step: str) -> None:
        if self.opts.rm or self.opts.forcerm:
            await self.out(f"Removing intermediate container {step}\n")


# -- helpers ------------------------------------------------------------------------------------


def _split_stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    stages: list[list[Instruction]] = []
    for ins in instructions:
        if ins.name == "from":
            stages.append([])
        stages[-1].append(ins)
    return stages


def _stage_name(ins: Instruction) -> str:
    words = ins.args.split()
    if len(words) == 3 and words[1].lower() == "as":
        return words[2].lower()
    if len(words) not in (1, 3):
        raise DockerfileError("FROM requires either one or three arguments")
    return ""


def _arg_pairs(ins: Instruction, env: dict[str, str]) -> list[tuple[str, str | None]]:
    words = ins.args.split() if isinstance(ins.args, str) else []
    if not words:
        raise DockerfileError("ARG requires at least one argument")
    pairs = []
    for word in words:
        name, eq, value = word.partition("=")
        pairs.append((name, expand_word(value, env) if eq else None))
    return pairs


def _shell(config: dict[str, Any]) -> list[str]:
    return list(config.get("Shell") or DEFAULT_SHELL)


def _nop(config: dict[str, Any], text: str, two_spaces: bool) -> list[str]:
    """The ``Cmd`` Docker records for a step that runs nothing: ``#(nop) `` and the text
    as separate words (two spaces when joined) or one (``COPY``, ``WORKDIR``: one space)."""
    return _shell(config) + (["#(nop) ", text] if two_spaces else ["#(nop) " + text])


def _id(stage: Stage) -> str:
    return stage.image.id if stage.image else ""


def _image_config(config: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in config.items() if k not in ("Image", "_created")}
    out.setdefault("Cmd", None)
    out.setdefault("Entrypoint", None)
    out.setdefault("Env", None)
    out.setdefault("WorkingDir", "")
    return out
