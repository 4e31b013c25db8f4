"""`berth build`: a Dockerfile and a context to an image, step by step, as docker's classic
builder does it — and with its log (`Step N/M : …`, ` ---> Using cache`, ` ---> Running in …`).

Each step's result is an image whose parent is the step before (untagged: `images -a` shows
them, `images` hides them, `rmi` of the built image removes them with it). A step is looked up
in the build cache (store table `build_cache`) by the digest of its parent image id, its
`created_by` text (the instruction after variable expansion; for RUN the build args in scope)
and, for COPY/ADD, the checksum of the files it copies. A miss rebuilds every later step,
because each later key contains the new parent. Beyond docker, a missed step whose
instruction was built before from the same parent says why it missed (`---> Cache miss: …`:
the file that changed, the build arg that differs); `--explain` says it for every miss.

RUN steps run in real containers through the engine (Engine.create + run_attached); COPY and
ADD write the new files into a fresh directory that becomes the layer; metadata instructions
add a history entry with `empty_layer`. Stages the target does not need are skipped.

Raises: BuildError (exit 1: a RUN failed), DockerfileError (with file and line), NotFound,
InvalidArgument.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from berth.errors import BerthError, InvalidArgument, NotFound

from .context import Context, Entry, SourceNotFound, clean
from .dockerfile import DockerfileError, Instruction, parse, parse_heredoc_word
from .files import (copy_file, extract_archive, is_archive, is_tar, lookup_in_layers,
                    untar_context)
from .shell import ShellLex

__all__ = ["BuildError", "BuildOptions", "Builder", "PROXY_ARGS"]

PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
              "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NOP = "/bin/sh -c #(nop) "
# `--link` changes how BuildKit stores a layer, not what it holds: accepted, a plain copy
_FLAGS = {"from": {"platform"}, "copy": {"from", "chown", "chmod", "link"},
          "add": {"chown", "chmod", "link", "checksum"},
          "run": {"network"},
          "healthcheck": {"interval", "timeout", "start-period", "start-interval", "retries"}}
# docker's flags that berth does not do yet: refused by name rather than ignored
_NOT_YET = {("copy", "parents"), ("copy", "exclude"), ("add", "parents"), ("add", "exclude"),
            ("add", "keep-git-dir"), ("run", "mount"), ("run", "security")}


class BuildError(BerthError):
    """A step failed (docker exits 1 for these)."""

    exit_code = 1


@dataclass
class BuildOptions:
    context: str = "."  # a directory, or "-" (a tarball or a Dockerfile on `stdin`)
    dockerfile: str | None = None  # path, "-" for stdin; default CONTEXT/Dockerfile
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str | None] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    pull: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    quiet: bool = False
    network: str = "default"
    iidfile: str = ""
    cache_from: list[str] = field(default_factory=list)
    explain: bool = False


@dataclass
class Stage:
    index: int
    name: str  # lower case, "" without AS
    from_inst: Instruction
    body: list[Instruction]


@dataclass
class State:
    """Where a stage is: its last image (None before the first step of `FROM scratch`), the
    image config document, and what the stage's variables are."""

    image_id: str | None
    doc: dict[str, Any]
    args: dict[str, str]  # ARGs declared in this stage, with their values
    cmd_set: bool = False
    missed: bool = False  # a step of this stage missed: every later step runs

    @property
    def config(self) -> dict[str, Any]:
        c = self.doc.setdefault("config", {})
        assert isinstance(c, dict)
        return c

    def env(self) -> dict[str, str]:
        out = dict(self.args)
        for item in self.config.get("Env") or []:
            k, _, v = item.partition("=")
            out[k] = v
        return out


def _arch() -> str:
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def _now() -> str:
    from berth.image.images import rfc3339_nano
    return rfc3339_nano(time.time_ns())


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


class Builder:
    """Builds with one engine (its image store, its database). `out` gets the log."""

    def __init__(self, engine: Any, out: IO[str] | None = None) -> None:
        self.engine = engine
        self.images = engine.images
        self.db = engine.db
        self.out = out if out is not None else sys.stdout
        self._mounts: list[str] = []
        self._tmp: list[str] = []

    # -- the log -------------------------------------------------------------------------------

    def log(self, text: str) -> None:
        if not self.quiet:
            self.out.write(text + "\n")
            self.out.flush()

    # -- entry -------------------------------------------------------------------------------

    def build(self, opts: BuildOptions, stdin: IO[bytes] | None = None) -> str:
        """Build; returns the image id ("sha256:…")."""
        self.opts = opts
        self.quiet = opts.quiet
        try:
            return self._build(opts, stdin)
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if self._mounts:
            from berth.store import mount as mnt
            for target in reversed(self._mounts):
                with contextlib.suppress(OSError, BerthError):
                    mnt.unmount(target)
            self._mounts.clear()
        for d in reversed(self._tmp):
            shutil.rmtree(d, ignore_errors=True)
        self._tmp.clear()

    def _tempdir(self, prefix: str) -> str:
        self.images.layers_dir.mkdir(parents=True, exist_ok=True)
        d = tempfile.mkdtemp(prefix=prefix, dir=self.images.layers_dir)
        self._tmp.append(d)
        return d

    def _build(self, opts: BuildOptions, stdin: IO[bytes] | None) -> str:
        started = time.monotonic()
        root, text, name = self._context(opts, stdin)
        df = parse(text, name)
        self.filename = name
        patterns = self._ignore_patterns(root)
        self.context = Context(root, patterns)
        self.escape = df.escape
        self.lex = ShellLex(df.escape)
        stages, global_args = self._stages(df.instructions)
        self.stages = stages
        target = self._target(stages, opts.target)
        needed = self._needed(stages, target)
        self.unused_args = {k for k in opts.build_args if k not in PROXY_ARGS}
        self.global_args = self._global_args(global_args)
        if opts.labels:  # docker's classic builder appends them as a LABEL of the last stage
            target.body = [*target.body, Instruction(
                cmd="label", args=tuple(x for k, v in opts.labels.items()
                                        for x in (_quote(k), _quote(v))),
                json=False, flags=(), original="LABEL " + " ".join(
                    f"{_quote(k)}={_quote(v)}" for k, v in opts.labels.items()),
                line=0, end_line=0)]
        self.total = sum(1 + len(stages[i].body) for i in needed)
        self.step = 0
        self.results: dict[int, State] = {}
        self._load_cache_from(opts.cache_from)
        for i in needed:
            self.results[i] = self._run_stage(stages, stages[i])
        final = self.results[target.index]
        image_id = final.image_id
        if image_id is None:  # FROM scratch and nothing else: an empty image
            image_id = self._commit(final, "", None, None)
        if self.unused_args:
            self.log("[Warning] One or more build-args [" + " ".join(sorted(self.unused_args))
                     + "] were not consumed")
        self.log(f"Successfully built {_short(image_id)}")
        for t in opts.tags:
            ref = self.images.tag(image_id, t)
            from berth.oci.reference import parse as parse_ref
            self.log(f"Successfully tagged {parse_ref(ref).familiar()}")
        if opts.iidfile:
            Path(opts.iidfile).write_text(image_id)
        self.db.record_event("image", "build", image_id, {
            "name": opts.tags[0] if opts.tags else image_id})
        if not self.quiet:
            self.out.write(f"Build took {time.monotonic() - started:.2f}s\n")
        return str(image_id)

    # -- context and Dockerfile ------------------------------------------------------------

    def _context(self, opts: BuildOptions, stdin: IO[bytes] | None) -> tuple[Path, str, str]:
        if opts.context == "-":
            if opts.dockerfile == "-":
                raise InvalidArgument("invalid argument: can't use stdin for both build "
                                      "context and dockerfile")
            data = (stdin or sys.stdin.buffer).read()
            root = Path(self._tempdir(".build-context-")) / "context"
            from berth.store.layers import detect_compression
            kind = detect_compression(data[:512])
            if kind != "none" or is_tar(data) or data[:3] == b"BZh" or \
                    data[:6] == b"\xfd7zXZ\x00":
                untar_context(data, root)
            else:  # a bare Dockerfile: no context
                root.mkdir()
                return root, data.decode("utf-8", "replace"), "Dockerfile"
            name = opts.dockerfile or "Dockerfile"
            path = root / clean(name)
            if not path.is_file():
                raise NotFound(f"Cannot locate specified Dockerfile: {name}")
            return root, path.read_text(errors="replace"), name
        root = Path(opts.context)
        if not root.is_dir():
            raise NotFound(f"unable to prepare context: path {opts.context!r} not found")
        if opts.dockerfile == "-":
            return root, (stdin or sys.stdin.buffer).read().decode("utf-8", "replace"), \
                "Dockerfile"
        path = Path(opts.dockerfile) if opts.dockerfile else root / "Dockerfile"
        if not path.is_file():
            raise NotFound(f"unable to prepare context: unable to evaluate symlinks in "
                           f"Dockerfile path: lstat {path}: no such file or directory"
                           if not path.exists() else
                           f"Cannot locate specified Dockerfile: {path}")
        return root, path.read_text(errors="replace"), path.name

    def _ignore_patterns(self, root: Path) -> list[str]:
        p = root / ".dockerignore"
        if not p.is_file():
            return []
        from .ignore import read_patterns
        return read_patterns(p.read_text(errors="replace"))

    def _stages(self, insts: Sequence[Instruction]) -> tuple[list[Stage], list[Instruction]]:
        stages: list[Stage] = []
        global_args: list[Instruction] = []
        for inst in insts:
            if inst.cmd == "from":
                words = list(inst.args)
                name = ""
                if len(words) == 3 and words[1].lower() == "as":
                    name = words[2].lower()
                    if not _valid_stage_name(name):
                        raise self._error(inst, f"invalid name for build stage: {words[2]!r}, "
                                                "name can't start with a number or contain "
                                                "symbols")
                    if any(s.name == name for s in stages):
                        raise self._error(inst, f"duplicate name {words[2]!r}")
                elif len(words) != 1:
                    raise self._error(inst, "FROM requires either one or three arguments")
                self._check_flags(inst)
                stages.append(Stage(len(stages), name, inst, []))
            elif not stages:
                if inst.cmd != "arg":  # only ARG may come before the first FROM
                    raise self._error(inst, "no build stage in current context")
                global_args.append(inst)
            else:
                self._check_flags(inst)
                stages[-1].body.append(inst)
        if not stages:
            raise DockerfileError("the Dockerfile has no FROM instruction",
                                  filename=self.filename)
        for st in stages:
            for inst in st.body:
                src = _flag(inst, "from") if inst.cmd == "copy" else None
                if src is not None:
                    ref = self._stage_ref(stages, st, src)
                    if ref is None and not self._image_exists(src):
                        raise self._error(inst, f"COPY --from={src}: no build stage and no "
                                                f"local image is named {src!r}")
        return stages, global_args

    def _stage_ref(self, stages: Sequence[Stage], current: Stage, ref: str) -> Stage | None:
        if ref.isdigit():
            i = int(ref)
            if i >= current.index:
                raise self._error(current.from_inst,
                                  f"invalid from flag value {ref}: refers to current or a "
                                  "later build stage")
            return stages[i]
        for s in stages[:current.index]:
            if s.name and s.name == ref.lower():
                return s
        return None

    def _image_exists(self, ref: str) -> bool:
        try:
            self.images.resolve(ref)
            return True
        except BerthError:
            return False

    def _target(self, stages: Sequence[Stage], target: str) -> Stage:
        if not target:
            return stages[-1]
        for s in stages:
            if s.name == target.lower():
                return s
        raise InvalidArgument(f"failed to reach build target {target} in Dockerfile: "
                              "no such stage")

    def _needed(self, stages: Sequence[Stage], target: Stage) -> list[int]:
        need: set[int] = set()

        def visit(s: Stage) -> None:
            if s.index in need:
                return
            need.add(s.index)
            base = self._stage_ref(stages, s, s.from_inst.args[0]) \
                if not s.from_inst.args[0].isdigit() else None
            if base is not None:
                visit(base)
            for inst in s.body:
                src = _flag(inst, "from") if inst.cmd == "copy" else None
                if src is not None:
                    ref = self._stage_ref(stages, s, src)
                    if ref is not None:
                        visit(ref)
        visit(target)
        return sorted(need)

    def _global_args(self, insts: Sequence[Instruction]) -> dict[str, str]:
        out: dict[str, str] = {}
        for inst in insts:
            for word in inst.args:
                name, eq, default = word.partition("=")
                if name in self.opts.build_args:
                    value = self.opts.build_args[name]
                    out[name] = value if value is not None else os.environ.get(name, "")
                    self.unused_args.discard(name)
                elif eq:
                    out[name] = self.lex.process_word(default, out)
        return out

    def _error(self, inst: Instruction, message: str) -> DockerfileError:
        return DockerfileError(message, filename=self.filename, line=inst.line)

    def _check_flags(self, inst: Instruction) -> None:
        allowed = _FLAGS.get(inst.cmd, set())
        for name, _ in inst.flags:
            if (inst.cmd, name) in _NOT_YET:
                raise self._error(inst, f"{inst.cmd.upper()} --{name} is not supported by "
                                        "berth yet")
            if name not in allowed:
                raise self._error(inst, f"unknown flag: --{name}")

    # -- stages ----------------------------------------------------------------------------

    def _run_stage(self, stages: Sequence[Stage], stage: Stage) -> State:
        self.current_stage = stage
        inst = stage.from_inst
        self._step_header(inst)
        state = self._from(stages, stage)
        for inst in stage.body:
            self._step_header(inst)
            self._dispatch(state, inst)
        return state

    def _step_header(self, inst: Instruction) -> None:
        self.step += 1
        self.log(f"Step {self.step}/{self.total} : {inst.original}")
        self._step_started = time.monotonic()

    def _from(self, stages: Sequence[Stage], stage: Stage) -> State:
        inst = stage.from_inst
        env = dict(self.global_args)
        platform_flag = _flag(inst, "platform")
        if platform_flag:
            want = self.lex.process_word(platform_flag, {
                **env, "BUILDPLATFORM": f"linux/{_arch()}", "TARGETPLATFORM": f"linux/{_arch()}"})
            if want.split("/")[:2] != ["linux", _arch()]:
                raise self._error(inst, f"FROM --platform={want}: berth builds for "
                                        f"linux/{_arch()} only")
        base = self.lex.process_word(inst.args[0], env)
        if not base:
            raise self._error(inst, "base name (" + inst.args[0] + ") should not be blank")
        ref = self._stage_ref(stages, stage, base) if not base.isdigit() else None
        if ref is not None:
            parent = self.results[ref.index]
            state = State(parent.image_id, json.loads(json.dumps(parent.doc)), {})
            self.log(f" ---> {_short(state.image_id) if state.image_id else 'scratch'}")
            return state
        if base.lower() == "scratch":
            self.log(" ---> scratch")
            return State(None, {"architecture": _arch(), "os": "linux",
                                "config": {"Env": [DEFAULT_PATH]},
                                "rootfs": {"type": "layers", "diff_ids": []}, "history": []},
                         {})
        if self.opts.pull:
            raise self._error(inst, f"--pull: cannot pull {base}: berth has no registry client "
                                    "yet (load the image with `berth load` and build without "
                                    "--pull)")
        try:
            img = self.images.get(base)
        except BerthError:
            raise self._error(inst, f"pull access denied for {base}: the image is not here and "
                                    "berth has no registry client yet (load it with "
                                    "`berth load`)") from None
        doc = json.loads(img.config.raw)
        self.log(f" ---> {_short(img.id)}")
        state = State(img.id, doc, {})
        triggers = list(state.config.get("OnBuild") or [])
        if triggers:
            self.log(f"# Executing {len(triggers)} build trigger"
                     + ("s" if len(triggers) > 1 else ""))
            state.config["OnBuild"] = None  # docker: triggers do not pass to grandchildren
            for text in triggers:
                parsed = parse(text, f"{base} ONBUILD")
                for t in parsed.instructions:
                    if t.cmd in ("onbuild", "from", "maintainer"):
                        raise self._error(inst, f"{t.cmd.upper()} isn't allowed as an "
                                                "ONBUILD trigger")
                    self._check_flags(t)
                    self._dispatch(state, t)
        return state

    def _dispatch(self, state: State, inst: Instruction) -> None:
        handler: Callable[[State, Instruction], None] | None = getattr(
            self, "_do_" + inst.cmd, None)
        if handler is None:
            raise self._error(inst, f"unknown instruction: {inst.cmd.upper()}")
        handler(state, inst)

    # -- the cache -------------------------------------------------------------------------

    def _step(self, state: State, inst: Instruction, created_by: str,
              inputs: dict[str, Any], apply: Callable[[State], None],
              make_layer: Callable[[State], Any] | None) -> None:
        """Reuse a cached result of this step, or run it: `apply` changes the config,
        `make_layer` (for steps that write files) returns a PackedLayer or None."""
        parent = state.image_id or ""
        key = _digest({"parent": parent, "created_by": created_by, "inputs": inputs})
        probe = _digest({"parent": parent, "instruction": inst.original,
                         "stage": self.current_stage.index})
        if not self.opts.no_cache:
            row = self.db.read("SELECT c.image_id FROM build_cache c JOIN images i ON "
                               "i.id = c.image_id WHERE c.key = ?", (key,))
            if row:
                with self.db.transaction() as tx:
                    tx.execute("UPDATE build_cache SET last_used_ns = ?, "
                               "use_count = use_count + 1 WHERE key = ?", (time.time_ns(), key))
                image_id = row[0][0]
                state.image_id = image_id
                state.doc = json.loads(self.images.get(image_id).config.raw)
                apply_state_only(state, apply)
                self.log(" ---> Using cache")
                self.log(f" ---> {_short(image_id)}")
                return
            if self._from_cache_images(state, created_by, apply):
                return
            self._explain(state, probe, inputs, created_by)
        state.missed = True
        layer = make_layer(state) if make_layer is not None else None
        apply(state)
        image_id = self._commit(state, created_by, layer, (key, probe, inputs))
        elapsed = time.monotonic() - self._step_started
        self.log(f" ---> {_short(image_id)} ({elapsed:.2f}s)")

    def _explain(self, state: State, probe: str, inputs: dict[str, Any],
                 created_by: str) -> None:
        if state.missed:
            if self.opts.explain:
                self.log(" ---> Cache miss: an earlier step of this stage was rebuilt")
            return
        rows = self.db.read("SELECT inputs, created_by FROM build_cache WHERE probe = ? "
                            "ORDER BY last_used_ns DESC LIMIT 1", (probe,))
        if not rows:
            if self.opts.explain:
                self.log(" ---> Cache miss: this step was never built on this parent")
            return
        old = json.loads(rows[0][0])
        reasons = _differences(old, inputs)
        if not reasons and rows[0][1] != created_by:
            reasons = [f"the instruction now reads {created_by!r} (was {rows[0][1]!r})"]
        self.log(" ---> Cache miss: " + ("; ".join(reasons) or "the cached image is gone"))

    def _load_cache_from(self, refs: Sequence[str]) -> None:
        self.cache_images: list[tuple[list[dict[str, Any]], list[str], str]] = []
        for ref in refs:
            try:
                img = self.images.get(ref)
            except BerthError:
                self.log(f"[Warning] --cache-from {ref}: no such image here, ignored")
                continue
            doc = json.loads(img.config.raw)
            self.cache_images.append((list(doc.get("history") or []),
                                      list(img.config.diff_ids), img.id))

    def _from_cache_images(self, state: State, created_by: str,
                           apply: Callable[[State], None]) -> bool:
        """--cache-from: a step matches when the cache image's history and layers so far are
        this build's, and its next history entry was made by the same instruction; then its
        layer is taken instead of running the step."""
        ours_h = list(state.doc.get("history") or [])
        ours_l = list((state.doc.get("rootfs") or {}).get("diff_ids") or [])
        for hist, diff_ids, _img in self.cache_images:
            if len(hist) <= len(ours_h) or hist[:len(ours_h)] != ours_h and \
                    [h.get("created_by") for h in hist[:len(ours_h)]] != \
                    [h.get("created_by") for h in ours_h]:
                continue
            if diff_ids[:len(ours_l)] != ours_l:
                continue
            nxt = hist[len(ours_h)]
            if nxt.get("created_by") != created_by:
                continue
            layer = None
            if not nxt.get("empty_layer"):
                if len(diff_ids) <= len(ours_l):
                    continue
                layer = _Existing(diff_ids[len(ours_l)])
            apply(state)
            image_id = self._commit(state, created_by, layer, None, created=nxt.get("created"))
            self.log(" ---> Using cache (from --cache-from)")
            self.log(f" ---> {_short(image_id)}")
            return True
        return False

    def _commit(self, state: State, created_by: str, layer: Any,
                cache: tuple[str, str, dict[str, Any]] | None,
                created: str | None = None) -> str:
        from berth.image.images import LayerSource
        doc = state.doc
        now = created or _now()
        rootfs = doc.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        diff_ids = list(rootfs.get("diff_ids") or [])
        parent_ids = list(diff_ids)
        if created_by:
            hist: dict[str, Any] = {"created": now, "created_by": created_by}
            if layer is None:
                hist["empty_layer"] = True
            else:
                diff_ids.append(str(layer.diff_id))
            doc["history"] = [*(doc.get("history") or []), hist]
        rootfs["diff_ids"] = diff_ids
        doc["rootfs"] = rootfs
        doc["created"] = now
        doc.setdefault("architecture", _arch())
        doc.setdefault("os", "linux")
        raw = json.dumps(doc, separators=(",", ":")).encode()
        parent = state.image_id or ""
        sources = [LayerSource(d, _no_open) for d in parent_ids]
        if isinstance(layer, _Packed):
            os.chmod(layer.directory, 0o755)
            sources.append(LayerSource(str(layer.diff_id), layer.open, str(layer.directory),
                                       str(layer.path), layer.size))
        elif layer is not None:
            sources.append(LayerSource(str(layer.diff_id), layer.open))
        img = self.images.add_image(raw, sources, event=None, parent=parent)
        state.image_id = img.id
        state.doc = json.loads(img.config.raw)
        if cache is not None:
            key, probe, inputs = cache
            size = 0
            if layer is not None:
                size = int(self.images.layer_sizes(img)[-1])
            now_ns = time.time_ns()
            with self.db.transaction() as tx:
                tx.execute("INSERT OR REPLACE INTO build_cache (key, image_id, parent_id, probe, "
                           "created_by, inputs, size, created_ns, last_used_ns) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (key, img.id, parent, probe, created_by, json.dumps(inputs), size,
                            now_ns, now_ns))
        return str(img.id)

    # -- variables ---------------------------------------------------------------------------

    def _word(self, state: State, word: str) -> str:
        return self.lex.process_word(word, state.env())

    def _words(self, state: State, inst: Instruction, split: bool = False) -> list[str]:
        """The instruction's arguments expanded, each as one word (the parser split them; a
        quoted "a b" stays one), as BuildKit does; `split` (EXPOSE only) splits an expansion
        on spaces too."""
        env = state.env()
        if split and not inst.json:
            return [w for a in inst.args for w in self.lex.process_words(a, env)]
        return [self.lex.process_word(w, env) for w in inst.args]

    def _used_args(self, state: State) -> list[str]:
        """The build args in scope, as docker's classic builder prefixes RUN with them."""
        return [f"{k}={v}" for k, v in sorted(state.args.items())]

    # -- metadata instructions -------------------------------------------------------------

    def _meta(self, state: State, inst: Instruction, text: str,
              apply: Callable[[State], None], pad: str = " ") -> None:
        self._step(state, inst, _NOP + pad + text, {}, apply, None)

    def _pairs(self, state: State, inst: Instruction) -> list[tuple[str, str]]:
        """ENV's and LABEL's key/value pairs, expanded with the variables before the step."""
        env = state.env()
        pairs = [(self.lex.process_word(inst.args[i], env),
                  self.lex.process_word(inst.args[i + 1], env))
                 for i in range(0, len(inst.args) - 1, 2)]
        if not pairs:
            raise self._error(inst, f"{inst.cmd.upper()} requires at least one argument")
        return pairs

    def _do_env(self, state: State, inst: Instruction) -> None:
        pairs = self._pairs(state, inst)
        for k, _ in pairs:
            if not k:
                raise self._error(inst, "ENV names can not be blank")

        def apply(s: State) -> None:
            items = list(s.config.get("Env") or [])
            for k, v in pairs:
                items = [e for e in items if e.partition("=")[0] != k] + [f"{k}={v}"]
            s.config["Env"] = items
        self._meta(state, inst, "ENV " + " ".join(f"{k}={v}" for k, v in pairs), apply)

    def _do_label(self, state: State, inst: Instruction) -> None:
        pairs = self._pairs(state, inst)

        def apply(s: State) -> None:
            labels = dict(s.config.get("Labels") or {})
            labels.update(pairs)
            s.config["Labels"] = labels
        self._meta(state, inst, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs), apply)

    def _do_arg(self, state: State, inst: Instruction) -> None:
        values: list[tuple[str, str | None]] = []
        for word in inst.args:
            name, eq, default = word.partition("=")
            if not name:
                raise self._error(inst, "ARG requires a name")
            if name in self.opts.build_args:
                v = self.opts.build_args[name]
                value: str | None = v if v is not None else os.environ.get(name)
                self.unused_args.discard(name)
            elif eq:
                value = self.lex.process_word(default, state.env())
            elif name in self.global_args:
                value = self.global_args[name]
            else:
                value = None
            values.append((name, value))

        def apply(s: State) -> None:
            for name, value in values:
                if value is not None:
                    s.args[name] = value
                else:
                    s.args.pop(name, None)
        # as written: a new value misses the cache where it is used, not here (docker)
        self._meta(state, inst, "ARG " + " ".join(inst.args), apply)

    def _do_cmd(self, state: State, inst: Instruction) -> None:
        cmd = self._command(state, inst)

        def apply(s: State) -> None:
            s.config["Cmd"] = cmd
            s.cmd_set = True
        self._meta(state, inst, "CMD " + json.dumps(cmd), apply)

    def _do_entrypoint(self, state: State, inst: Instruction) -> None:
        ep = self._command(state, inst)

        def apply(s: State) -> None:
            s.config["Entrypoint"] = ep
            if not s.cmd_set:  # docker: an ENTRYPOINT resets a CMD from the base image
                s.config["Cmd"] = None
        self._meta(state, inst, "ENTRYPOINT " + json.dumps(ep), apply)

    def _command(self, state: State, inst: Instruction) -> list[str]:
        if inst.json:
            return list(inst.args)
        text = inst.args[0] if inst.args else ""
        if not text.strip():
            return []
        return [*(state.config.get("Shell") or DEFAULT_SHELL), text]

    def _do_shell(self, state: State, inst: Instruction) -> None:
        if not inst.json or not inst.args:
            raise self._error(inst, "SHELL requires the arguments to be in JSON form")
        shell = list(inst.args)

        def apply(s: State) -> None:
            s.config["Shell"] = shell
        self._meta(state, inst, "SHELL " + json.dumps(shell), apply)

    def _do_expose(self, state: State, inst: Instruction) -> None:
        from berth.image.changes import expose_ports
        ports = expose_ports(self._words(state, inst, split=True),
                             f"{self.filename}:{inst.line}: EXPOSE")

        def apply(s: State) -> None:
            exposed = dict(s.config.get("ExposedPorts") or {})
            for p in ports:
                exposed[p] = {}
            s.config["ExposedPorts"] = exposed
        self._meta(state, inst, "EXPOSE " + " ".join(sorted(set(ports))), apply)

    def _do_user(self, state: State, inst: Instruction) -> None:
        user = self._word(state, inst.args[0] if inst.args else "")
        if not user:
            raise self._error(inst, "USER requires exactly one argument")

        def apply(s: State) -> None:
            s.config["User"] = user
        self._meta(state, inst, "USER " + user, apply)

    def _do_volume(self, state: State, inst: Instruction) -> None:
        vols = self._words(state, inst)
        if not vols or any(not v.strip() for v in vols):
            raise self._error(inst, "VOLUME specified can not be an empty string")

        def apply(s: State) -> None:
            volumes = dict(s.config.get("Volumes") or {})
            for v in vols:
                volumes[v] = {}
            s.config["Volumes"] = volumes
        self._meta(state, inst, "VOLUME " + json.dumps(vols), apply)

    def _do_stopsignal(self, state: State, inst: Instruction) -> None:
        sig = self._word(state, inst.args[0] if inst.args else "")
        from berth.engine.containers import signal_number
        try:
            signal_number(sig)
        except BerthError as e:
            raise self._error(inst, f"STOPSIGNAL: {e}") from None

        def apply(s: State) -> None:
            s.config["StopSignal"] = sig
        self._meta(state, inst, "STOPSIGNAL " + sig, apply)

    def _do_healthcheck(self, state: State, inst: Instruction) -> None:
        from berth.image.changes import healthcheck_config
        flags = " ".join(f"--{k}={v}" for k, v in inst.flags)
        if inst.args and inst.args[0].upper() == "NONE":
            if len(inst.args) > 1 or inst.flags:
                raise self._error(inst, "HEALTHCHECK NONE takes no arguments")
            rest = "NONE"
        elif len(inst.args) >= 2 and inst.args[0].upper() == "CMD":
            rest = "CMD " + (json.dumps(list(inst.args[1:])) if inst.json else inst.args[1])
        else:
            raise self._error(inst, "HEALTHCHECK requires CMD or NONE")
        try:
            hc = healthcheck_config(f"{flags} {rest}".strip(), f"{self.filename}:{inst.line}")
        except InvalidArgument as e:
            raise self._error(inst, str(e)) from None

        def apply(s: State) -> None:
            s.config["Healthcheck"] = hc
        self._meta(state, inst, "HEALTHCHECK " + json.dumps(hc, separators=(",", ":")), apply)

    def _do_onbuild(self, state: State, inst: Instruction) -> None:
        sub = inst.sub
        if sub is None:
            raise self._error(inst, "ONBUILD requires an instruction")
        trigger = inst.original.split(None, 1)[1] if " " in inst.original.strip() else ""
        trigger = trigger.strip()

        def apply(s: State) -> None:
            s.config["OnBuild"] = [*(s.config.get("OnBuild") or []), trigger]
        self._meta(state, inst, "ONBUILD " + trigger, apply)

    def _do_maintainer(self, state: State, inst: Instruction) -> None:
        who = inst.args[0] if inst.args else ""

        def apply(s: State) -> None:
            s.doc["author"] = who
        self._meta(state, inst, "MAINTAINER " + who, apply)

    # -- WORKDIR ---------------------------------------------------------------------------

    def _do_workdir(self, state: State, inst: Instruction) -> None:
        raw = self._word(state, inst.args[0] if inst.args else "")
        if not raw:
            raise self._error(inst, "WORKDIR requires exactly one argument")
        base = state.config.get("WorkingDir") or "/"
        path = os.path.normpath(os.path.join(base, raw))
        path = "/" + path.lstrip("/")

        def apply(s: State) -> None:
            s.config["WorkingDir"] = path
        exists = self._lookup(state, path.strip("/")) is not None if path != "/" else True
        make = None if exists else (lambda s: self._mkdir_layer(s, path))
        self._step(state, inst, _NOP + "WORKDIR " + path, {"exists": exists}, apply, make)

    def _mkdir_layer(self, state: State, path: str) -> Any:
        upper = Path(self._tempdir(".build-layer-"))
        owner = (0, 0)
        self._make_parents(state, upper, path.strip("/") + "/x", owner, set())
        (upper / path.strip("/")).chmod(0o755)
        return self._pack(upper)

    # -- RUN -------------------------------------------------------------------------------

    def _do_run(self, state: State, inst: Instruction) -> None:
        if state.image_id is None:
            raise self._error(inst, "RUN on an empty image (FROM scratch): there is no "
                                    "program to run")
        script = None
        if inst.json:
            args = list(inst.args)
            shown = " ".join(args)
        else:
            text = inst.args[0] if inst.args else ""
            word = parse_heredoc_word(text.strip()) if inst.heredocs else None
            if word is not None and len(inst.heredocs) == 1 and \
                    word.name == inst.heredocs[0].name:
                script = inst.heredocs[0]  # `RUN <<EOF`: the heredoc is the script
                text = script.content
            elif inst.heredocs:  # the shell reads the heredocs itself
                text = text + "\n" + "".join(h.content + h.name + "\n" for h in inst.heredocs)
            if script is not None and script.content.startswith("#!"):
                # BuildKit runs a script with a #! line as a file, by its interpreter
                args = [f"/dev/pipes/{script.name}"]
                shown = text
            else:
                args = [*(state.config.get("Shell") or DEFAULT_SHELL), text]
                shown = " ".join(args)
        used = self._used_args(state)
        created_by = (f"|{len(used)} {' '.join(used)} {shown}" if used else shown)
        network = _flag(inst, "network") or self.opts.network
        files = {args[0]: script.content} if args[0].startswith("/dev/pipes/") and \
            script is not None else {}
        self._step(state, inst, created_by, {"args": used},
                   lambda s: None,
                   lambda s: self._run_container(s, inst, args, network, files))

    def _run_container(self, state: State, inst: Instruction, args: list[str],
                       network: str, files: dict[str, str] | None = None) -> Any:
        from berth.engine.options import BindMount
        from berth.engine.spec import CreateOptions
        assert state.image_id is not None
        mounts = []
        for target, content in (files or {}).items():  # a script, bound in read-only
            host = Path(self._tempdir(".build-script-")) / "script"
            host.write_text(content)
            host.chmod(0o755)
            mounts.append(BindMount("bind", str(host), target, readonly=True))
        env = [f"{k}={v}" for k, v in state.args.items()]
        env += [f"{k}={v}" for k, v in self._proxy_env().items()]
        net = {"default": "host", "": "host"}.get(network, network)
        if net not in ("none", "host"):
            raise self._error(inst, f"network mode {network!r} not supported for RUN "
                                    "(none or host)")
        opts = CreateOptions(args=args, entrypoint="", env=env,
                             workdir=state.config.get("WorkingDir") or "",
                             user=state.config.get("User") or "", network=net,
                             mounts=mounts, image_volumes=False)
        c = self.engine.create(state.image_id, opts)
        self.log(f" ---> Running in {c.short_id}")
        try:
            if self.quiet:
                with tempfile.TemporaryFile() as f:
                    code = self.engine.run_attached(c.id, stdout=f.fileno(), stderr=f.fileno())
                    if code != 0:
                        f.seek(0)
                        sys.stderr.write(f.read().decode(errors="replace"))
            else:
                self.out.flush()
                sys.stdout.flush()
                out_fd = _fileno(self.out)
                code = self.engine.run_attached(c.id, stdout=out_fd, stderr=out_fd)
            if code != 0:
                raise BuildError(f"The command '{' '.join(args)}' returned a non-zero code: "
                                 f"{code}")
            tmp = Path(self._tempdir(".build-run-"))
            packed, upper = self.engine.take_changes(c.id, tmp)
            return _Packed(packed, upper)
        finally:
            self.log(f"Removing intermediate container {c.short_id}")
            with contextlib.suppress(BerthError):
                self.engine.remove(c.id, force=True)

    def _proxy_env(self) -> dict[str, str]:
        out = {}
        for k in PROXY_ARGS:
            if k in self.opts.build_args:
                v = self.opts.build_args[k]
                out[k] = v if v is not None else os.environ.get(k, "")
        return out

    # -- COPY and ADD ----------------------------------------------------------------------

    def _do_copy(self, state: State, inst: Instruction) -> None:
        self._copy(state, inst, add=False)

    def _do_add(self, state: State, inst: Instruction) -> None:
        self._copy(state, inst, add=True)

    def _copy(self, state: State, inst: Instruction, add: bool) -> None:
        what = "ADD" if add else "COPY"
        words = self._words(state, inst)
        heredoc_names = {h.name for h in inst.heredocs}
        # heredoc sources stay as written (`<<EOF`); the rest are expanded
        words = [a if parse_heredoc_word(a) is not None else w
                 for a, w in zip(inst.args, words)] if not inst.json else words
        if len(words) < 2:
            raise self._error(inst, f"{what} requires at least two arguments, but only "
                                    f"{len(words)} provided")
        srcs, dest_raw = words[:-1], words[-1]
        env = state.env()
        chown = _flag(inst, "chown")
        chmod = _flag(inst, "chmod")
        owner = (0, 0)
        if chown:
            owner = self._chown(state, inst, self.lex.process_word(chown, env))
        mode = None
        if chmod:
            try:
                mode = int(self.lex.process_word(chmod, env), 8)
            except ValueError:
                raise self._error(inst, f"invalid chmod parameter: {chmod!r} (an octal "
                                        "mode such as 0755)") from None
        workdir = state.config.get("WorkingDir") or "/"
        dest_is_dir = dest_raw.endswith("/") or dest_raw.endswith("/.") or dest_raw == "."
        dest = os.path.normpath(os.path.join(workdir, dest_raw)).lstrip("/")
        dest = "" if dest == "." else dest
        from_ref = _flag(inst, "from")
        checksum_flag = _flag(inst, "checksum")
        if checksum_flag and not add:
            raise self._error(inst, "COPY does not take --checksum (ADD of a URL does)")
        # what is copied, from where
        plan: list[tuple[str, str, list[Entry], Context | None, bytes | None]] = []
        # (kind, name, entries, context, data); kind: ctx | heredoc | url
        src_ctx = self.context
        src_label = "context"
        if from_ref is not None:
            src_ctx, src_label = self._from_source(state, inst, from_ref)
        if parse_heredoc_word(dest_raw) is not None and not inst.json:
            raise self._error(inst, f"{what}: a heredoc cannot be the destination")
        for src in srcs:
            word = parse_heredoc_word(src) if not inst.json else None
            if word is not None and word.name in heredoc_names:
                h = next(h for h in inst.heredocs if h.name == word.name)
                content = h.content
                if h.expand:  # unquoted delimiter: variables expand, quotes stay
                    content = ShellLex(self.escape, skip_process_quotes=True).process_word(
                        content, env)
                plan.append(("heredoc", h.name, [], None, content.encode()))
            elif add and (src.startswith("http://") or src.startswith("https://")):
                plan.append(("url", src, [], None, None))
            else:
                try:
                    for top, entries in src_ctx.resolve(src, what):
                        plan.append(("ctx", top, entries, src_ctx, None))
                except SourceNotFound as e:
                    raise self._error(inst, str(e)) from None
        if len(plan) > 1 and not dest_is_dir:
            raise self._error(inst, f"When using {what} with more than one source file, the "
                                    "destination must be a directory and end with a /")
        if not dest_is_dir and dest and len(plan) == 1:
            st = self._lookup(state, dest)
            if st is not None and stat.S_ISDIR(st.st_mode):
                dest_is_dir = True
        # the cache key: the files' checksum (URLs: their content, fetched now)
        fetched: dict[str, tuple[bytes, str]] = {}
        per: dict[str, str] = {}
        h = hashlib.sha256()
        for kind, name, entries, ctx, data in plan:
            if kind == "ctx":
                assert ctx is not None
                digest, files = ctx.checksum([(name, entries)])
                per.update({f"{src_label}:{k}": v for k, v in files.items()})
            elif kind == "heredoc":
                digest = hashlib.sha256(data or b"").hexdigest()
                per[f"heredoc:{name}"] = digest
            else:
                body, digest = self._download(inst, name, checksum_flag)
                fetched[name] = (body, digest)
                per[f"url:{name}"] = digest
            h.update(f"{kind}:{name}:{digest}\n".encode())
        sum_ = h.hexdigest()
        kind0 = plan[0][0]
        label = "multi" if len(plan) > 1 else (
            "dir" if kind0 == "ctx" and stat.S_ISDIR(plan[0][2][0].st.st_mode) else "file")
        flags = " ".join(f"--{k}={v}" for k, v in inst.flags if k in ("chown", "chmod", "from"))
        created_by = f"{_NOP}{what} {flags + ' ' if flags else ''}{label}:{sum_} in " \
                     f"{'/' + dest if dest else '/'}{'/' if dest_is_dir and dest else ''} "
        inputs = {"files": per if len(per) <= 10000 else {}, "sum": sum_,
                  "owner": list(owner), "mode": mode}

        def make(s: State) -> Any:
            upper = Path(self._tempdir(".build-layer-"))
            made: set[str] = set()
            for kind, name, entries, _ctx, data in plan:
                if kind == "heredoc":
                    target = f"{dest}/{name}" if dest_is_dir else dest
                    self._make_parents(s, upper, target, owner, made)
                    p = upper / target
                    p.write_bytes(data or b"")
                    os.chown(p, *owner)
                    os.chmod(p, mode if mode is not None else 0o644)
                elif kind == "url":
                    body, _ = fetched[name]
                    base = name.rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "index.html"
                    target = f"{dest}/{base}" if dest_is_dir else dest
                    self._make_parents(s, upper, target, owner, made)
                    p = upper / target
                    p.write_bytes(body)
                    os.chown(p, *owner)
                    os.chmod(p, mode if mode is not None else 0o600)
                else:
                    self._copy_entries(s, upper, name, entries, dest, dest_is_dir, owner, mode,
                                       made, add and _ctx is self.context)
            return self._pack(upper)
        self._step(state, inst, created_by, inputs, lambda s: None, make)

    def _copy_entries(self, state: State, upper: Path, name: str, entries: list[Entry],
                      dest: str, dest_is_dir: bool, owner: tuple[int, int], mode: int | None,
                      made: set[str], may_unpack: bool) -> None:
        top = entries[0]
        is_dir = stat.S_ISDIR(top.st.st_mode)
        if is_dir:
            base = dest
        elif dest_is_dir or not dest:
            base = f"{dest}/{os.path.basename(name)}" if dest else os.path.basename(name)
        else:
            base = dest
        if not is_dir and may_unpack and stat.S_ISREG(top.st.st_mode) and is_archive(top.path):
            target_dir = dest if (dest_is_dir or not dest) else dest
            if target_dir:
                self._make_parents(state, upper, target_dir + "/x", owner, made)
            extract_archive(top.path, upper / target_dir if target_dir else upper,
                             Path(self._tempdir(".build-add-")))
            return
        if base:
            self._make_parents(state, upper, base, owner, made)
        dirs: list[tuple[Path, os.stat_result]] = []
        for e in entries:
            rel = f"{base}/{e.rel}" if e.rel else base
            out = upper / rel if rel else upper
            m = e.st.st_mode
            if stat.S_ISDIR(m):
                if rel:
                    if out.is_symlink() or (out.exists() and not out.is_dir()):
                        out.unlink()
                    out.mkdir(exist_ok=True)
                    os.chown(out, *owner)
                    os.chmod(out, mode if mode is not None else stat.S_IMODE(m))
                    dirs.append((out, e.st))
                    made.add(rel)
                continue
            if os.path.lexists(out):
                if out.is_dir() and not out.is_symlink():
                    shutil.rmtree(out)
                else:
                    out.unlink()
            if stat.S_ISREG(m):
                copy_file(e.path, out)
                os.chown(out, *owner)
                os.chmod(out, mode if mode is not None else stat.S_IMODE(m))
            elif stat.S_ISLNK(m):
                os.symlink(os.readlink(e.path), out)
                os.lchown(out, *owner)
            elif stat.S_ISFIFO(m):
                os.mkfifo(out, stat.S_IMODE(m))
                os.chown(out, *owner)
            else:
                continue  # sockets and devices of a context are not copied
            os.utime(out, ns=(e.st.st_atime_ns, e.st.st_mtime_ns), follow_symlinks=False)
        for d, st in reversed(dirs):
            os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))

    def _make_parents(self, state: State, upper: Path, rel: str, owner: tuple[int, int],
                      made: set[str]) -> None:
        """The directories above `rel` in the new layer: as the image has them (mode, owner,
        times), or new ones (0755, the --chown owner, as docker)."""
        parts = rel.strip("/").split("/")[:-1]
        cur = ""
        for part in parts:
            cur = f"{cur}/{part}" if cur else part
            p = upper / cur
            if cur in made or p.is_dir():
                continue
            st = self._lookup(state, cur)
            p.mkdir()
            if st is not None and stat.S_ISDIR(st.st_mode):
                os.chown(p, st.st_uid, st.st_gid)
                os.chmod(p, stat.S_IMODE(st.st_mode))
                os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
            else:
                os.chown(p, *owner)
                os.chmod(p, 0o755)
            made.add(cur)

    def _lookup(self, state: State, rel: str) -> os.stat_result | None:
        """lstat of /rel in the image so far (its layers, top first, with whiteouts)."""
        if state.image_id is None:
            return None
        layers = list(reversed(self.images.layer_dirs(state.image_id)))
        return lookup_in_layers(layers, rel)

    def _image_file(self, image_id: str | None, rel: str) -> str | None:
        if image_id is None:
            return None
        layers = list(reversed(self.images.layer_dirs(image_id)))
        st = lookup_in_layers(layers, rel)
        if st is None or not stat.S_ISREG(st.st_mode):
            return None
        for layer in layers:
            p = os.path.join(layer, rel)
            if os.path.lexists(p):
                with open(p, errors="replace") as f:
                    return f.read()
        return None

    def _chown(self, state: State, inst: Instruction, spec: str) -> tuple[int, int]:
        """docker: names from the image's /etc/passwd and /etc/group (an unknown name fails);
        a user without a group means the same number as the group ("11" is 11:11)."""
        from berth.engine.options import resolve_user
        _user, _, group = spec.partition(":")
        passwd = self._image_file(state.image_id, "etc/passwd")
        groups = self._image_file(state.image_id, "etc/group")
        try:
            u = resolve_user(spec, passwd, groups)
        except InvalidArgument as e:
            raise self._error(inst, f"--chown={spec}: {e}") from None
        return u.uid, (u.gid if group else u.uid)

    def _from_source(self, state: State, inst: Instruction, ref: str) -> tuple[Context, str]:
        from berth.image.unpack import view_rootfs
        from berth.store import mount as mnt
        stage = self._stage_ref_by_name(ref)
        if stage is not None:
            image_id = self.results[stage.index].image_id
            label = f"stage {ref}"
        else:
            image_id = self.images.resolve(ref)
            label = f"image {ref}"
        if image_id is None:  # an empty stage
            return Context(self._tempdir(".build-empty-")), label
        key = "build-" + os.urandom(8).hex()
        [plan] = view_rootfs(self.images, image_id, key)
        mnt.mount_all([plan])
        self._mounts.append(str(plan.target))
        self._tmp.append(str(Path(plan.target).parent))
        return Context(plan.target), label + f"@{_short(image_id)}"

    def _stage_ref_by_name(self, ref: str) -> Stage | None:
        found = self._stage_ref(self.stages, self.current_stage, ref)
        return found if found is not None and found.index in self.results else None

    def _download(self, inst: Instruction, url: str, checksum: str | None) -> tuple[bytes, str]:
        import urllib.request
        try:
            with urllib.request.urlopen(url, timeout=60) as r:  # noqa: S310 - http(s) only
                body = r.read()
        except Exception as e:  # noqa: BLE001 - every failure of a download is the user's
            raise self._error(inst, f"ADD {url}: download failed: {e}") from None
        digest = hashlib.sha256(body).hexdigest()
        if checksum:
            algo, _, want = checksum.partition(":")
            if algo != "sha256" or not want:
                raise self._error(inst, f"--checksum={checksum}: expected sha256:<hex>")
            if want != digest:
                raise self._error(inst, f"ADD {url}: digest mismatch: expected sha256:{want}, "
                                        f"got sha256:{digest}")
        return body, digest

    def _pack(self, upper: Path) -> Any:
        from berth.store.layers import pack
        out = Path(self._tempdir(".build-tar-")) / "layer.tar"
        return _Packed(pack(upper, out), upper)


class _Packed:
    """A new layer for add_image: its tar (diff_id, size) and the directory it was packed
    from, in overlay form, which becomes the layer's directory."""

    def __init__(self, packed: Any, directory: Path) -> None:
        self.diff_id = packed.diff_id
        self.path = packed.path
        self.size = packed.size
        self.directory = directory

    def open(self) -> IO[bytes]:
        return open(self.path, "rb")


class _Existing:
    def __init__(self, diff_id: str) -> None:
        self.diff_id = diff_id

    def open(self) -> IO[bytes]:
        raise NotFound(f"layer {self.diff_id} is not in the store")


def _no_open() -> IO[bytes]:
    raise NotFound("a layer of the parent image is missing from the store")


def apply_state_only(state: State, apply: Callable[[State], None]) -> None:
    """On a cache hit the config comes from the cached image; `apply` still runs for what the
    builder tracks beside the config (ARG values, whether CMD was set)."""
    saved = json.dumps(state.doc)
    apply(state)
    state.doc = json.loads(saved)


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    of, nf = old.get("files") or {}, new.get("files") or {}
    if of or nf:
        changed = sorted(k for k in set(of) & set(nf) if of[k] != nf[k])
        added = sorted(set(nf) - set(of))
        gone = sorted(set(of) - set(nf))
        for k in changed[:5]:
            out.append(f"{k.partition(':')[2] or k} changed")
        for k in added[:5]:
            out.append(f"{k.partition(':')[2] or k} is new")
        for k in gone[:5]:
            out.append(f"{k.partition(':')[2] or k} is gone")
        more = len(changed) + len(added) + len(gone) - len(out)
        if more > 0:
            out.append(f"and {more} more")
    elif old.get("sum") != new.get("sum"):
        out.append("the copied files changed")
    oa, na = old.get("args") or [], new.get("args") or []
    if oa != na:
        od = dict(a.partition("=")[::2] for a in oa)
        nd = dict(a.partition("=")[::2] for a in na)
        for k in sorted(set(od) | set(nd)):
            if od.get(k) != nd.get(k):
                out.append(f"build arg {k}: {od.get(k, '(unset)')!r} -> {nd.get(k, '(unset)')!r}")
    for k in ("owner", "mode", "exists"):
        if old.get(k) != new.get(k):
            out.append(f"{k}: {old.get(k)!r} -> {new.get(k)!r}")
    return out


def _flag(inst: Instruction, name: str) -> str | None:
    value = None
    for k, v in inst.flags:
        if k == name:
            value = v if v is not None else ""
    return value


def _quote(s: str) -> str:
    if s and all(c.isalnum() or c in "._-/:@" for c in s):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _valid_stage_name(name: str) -> bool:
    import re
    return re.fullmatch(r"[a-z][a-z0-9\-_.]*", name) is not None


def _fileno(stream: Any) -> int:
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return 1
