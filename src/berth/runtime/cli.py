"""`berth-runtime`: the OCI runtime command line (runc's grammar) over berth.runtime.container.

Options come before the container id; the bundle defaults to the current directory. Errors go
to stderr as `berth-runtime: <message>` with exit status 1, as runc does; `run` passes the
container's own exit status through (128+N when a signal N killed it).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = """usage: berth-runtime [--root DIR] COMMAND [OPTIONS] ID

Commands:
  create   create a container from a bundle (stopped before the user process)
             [--bundle DIR] [--pid-file F] [--console-socket SOCK] [--preserve-fds N] ID
  start    run the user process of a created container          ID
  run      create, start and wait; the exit status is the container's
             [--bundle DIR] [--pid-file F] [--console-socket SOCK] [--detach] [--keep] ID
  state    print the state of a container (OCI JSON)             ID
  kill     send a signal (default SIGTERM) to the container      [--all] ID [SIGNAL]
  delete   delete a stopped container (--force kills it first)  [--force] ID
  exec     run a new process inside a running container
             [--tty] [--env K=V]... [--cwd DIR] [--user UID[:GID]] [--process FILE]
             [--detach] [--pid-file F] [--console-socket SOCK] ID [--] COMMAND...
  ps       list the processes of a container                    [--format table|json] ID
  list     list containers                                      [--format table|json] [-q]
  pause    freeze every process of a container                  ID
  resume   thaw a paused container                              ID
  spec     write a default config.json                          [--bundle DIR]

Global options: --root DIR (default $BERTH_RUN/runtime, BERTH_RUN defaults to /run/berth),
--version. --log, --log-format, --debug and --systemd-cgroup are accepted for compatibility
with callers of runc and ignored.
"""

# A small hand-written parser: argparse costs ~7 ms of start-up on every container start.
# option -> (canonical name, takes a value, repeatable)
_BUNDLE = {"--bundle": ("bundle", True, False), "-b": ("bundle", True, False),
           "--pid-file": ("pid_file", True, False),
           "--console-socket": ("console_socket", True, False),
           "--no-pivot": ("no_pivot", False, False),
           "--no-new-keyring": ("no_new_keyring", False, False),
           "--preserve-fds": ("preserve_fds", True, False)}
_COMMANDS: dict[str, tuple[dict[str, tuple[str, bool, bool]], tuple[str, ...]]] = {
    "create": (_BUNDLE, ("id",)),
    "run": ({**_BUNDLE, "--detach": ("detach", False, False), "-d": ("detach", False, False),
             "--keep": ("keep", False, False)}, ("id",)),
    "start": ({}, ("id",)), "state": ({}, ("id",)), "pause": ({}, ("id",)),
    "resume": ({}, ("id",)),
    "kill": ({"--all": ("all", False, False), "-a": ("all", False, False)}, ("id", "signal?")),
    "delete": ({"--force": ("force", False, False), "-f": ("force", False, False)}, ("id",)),
    "exec": ({"--tty": ("tty", False, False), "-t": ("tty", False, False),
              "--env": ("env", True, True), "-e": ("env", True, True),
              "--cwd": ("cwd", True, False), "--user": ("user", True, False),
              "-u": ("user", True, False), "--process": ("process", True, False),
              "-p": ("process", True, False), "--detach": ("detach", False, False),
              "-d": ("detach", False, False), "--pid-file": ("pid_file", True, False),
              "--console-socket": ("console_socket", True, False)}, ("id", "command*")),
    "ps": ({"--format": ("format", True, False), "-f": ("format", True, False)}, ("id",)),
    "list": ({"--format": ("format", True, False), "-f": ("format", True, False),
              "--quiet": ("quiet", False, False), "-q": ("quiet", False, False)}, ()),
    "spec": ({"--bundle": ("bundle", True, False), "-b": ("bundle", True, False)}, ()),
}
_GLOBAL = {"--root": ("root", True, False), "--log": ("log", True, False),
           "--log-format": ("log_format", True, False), "--debug": ("debug", False, False),
           "--systemd-cgroup": ("systemd_cgroup", False, False),
           "--version": ("version", False, False), "-v": ("version", False, False),
           "--help": ("help", False, False), "-h": ("help", False, False)}


class UsageError(Exception):
    pass


def _take_options(argv: list[str], i: int, table: dict[str, tuple[str, bool, bool]],
                  out: dict[str, Any], stop_at_positional: bool = True) -> int:
    while i < len(argv):
        arg = argv[i]
        if arg == "--" or not arg.startswith("-") or arg == "-":
            return i
        name, _, inline = arg.partition("=")
        if name not in table:
            raise UsageError(f"unknown option {name}")
        key, takes, multi = table[name]
        if takes:
            if inline or "=" in arg:
                value = inline
            else:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"option {name} needs a value")
                value = argv[i]
            if multi:
                out.setdefault(key, []).append(value)
            else:
                out[key] = value
        else:
            out[key] = True
        i += 1
    return i


def parse_args(argv: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    i = _take_options(argv, 0, _GLOBAL, out)
    if i >= len(argv):
        return out
    cmd = argv[i]
    if cmd not in _COMMANDS:
        raise UsageError(f"unknown command {cmd!r}")
    out["cmd"] = cmd
    table, positionals = _COMMANDS[cmd]
    i = _take_options(argv, i + 1, {**table, "--help": ("help", False, False),
                                    "-h": ("help", False, False)}, out)
    rest = argv[i:]
    for pos in positionals:
        if pos.endswith("*"):
            if rest and rest[0] == "--":
                rest = rest[1:]
            out[pos[:-1]] = rest
            rest = []
        elif pos.endswith("?"):
            if rest:
                out[pos[:-1]] = rest.pop(0)
        else:
            if not rest or (rest[0].startswith("-") and rest[0] != "-"):
                if rest:
                    raise UsageError(f"unknown option {rest[0]} (options go before the id)")
                raise UsageError(f"{cmd}: missing container {pos}")
            out[pos] = rest.pop(0)
    if rest:
        raise UsageError(f"{cmd}: unexpected argument {rest[0]!r}")
    return out


def parse_signal(text: str) -> int:
    import signal

    from berth.errors import InvalidArgument
    t = text.strip().upper()
    if t.isdigit():
        n = int(t)
        if 0 < n < signal.NSIG:
            return n
        raise InvalidArgument(f"unknown signal {text!r}")
    if not t.startswith("SIG"):
        t = "SIG" + t
    try:
        return int(signal.Signals[t])
    except KeyError:
        if t.startswith("SIGRTMIN+") and t[9:].isdigit():
            return int(signal.SIGRTMIN) + int(t[9:])
        raise InvalidArgument(f"unknown signal {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        print(f"berth-runtime: {e}\n\n{USAGE}", file=sys.stderr, end="")
        return 2
    if args.get("help"):
        print(USAGE, end="")
        return 0
    if args.get("version"):
        from berth import __version__
        print(f"berth-runtime version {__version__}\nspec: 1.0.2")
        return 0
    if "cmd" not in args:
        print(USAGE, file=sys.stderr, end="")
        return 2
    from berth.errors import BerthError
    try:
        return _dispatch(args) or 0
    except BerthError as e:
        print(f"berth-runtime: {e}", file=sys.stderr)
        for note in getattr(e, "__notes__", []):
            print(f"berth-runtime: {note}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(a: dict[str, Any]) -> int:
    from berth.runtime.container import CreateOptions, Runtime
    from berth.runtime.state import default_root
    rt = Runtime(a.get("root") or default_root())
    cmd = a["cmd"]
    if cmd == "spec":
        return _spec(a.get("bundle", "."))
    if cmd == "create":
        rt.create(a["id"], a.get("bundle", "."),
                  CreateOptions(console_socket=a.get("console_socket"), pid_file=a.get("pid_file"),
                                preserve_fds=_count(a.get("preserve_fds", "0"))))
        return 0
    if cmd == "run":
        from berth.runtime.run import run
        return run(rt, a["id"], a.get("bundle", "."), detach=a.get("detach", False),
                   console_socket=a.get("console_socket"), pid_file=a.get("pid_file"),
                   keep=a.get("keep", False), preserve_fds=_count(a.get("preserve_fds", "0")))
    if cmd == "start":
        rt.start(a["id"])
    elif cmd == "state":
        import json
        print(json.dumps(rt.state(a["id"]), indent=2))
    elif cmd == "kill":
        rt.kill(a["id"], parse_signal(a.get("signal", "SIGTERM")), all_processes=a.get("all", False))
    elif cmd == "delete":
        rt.delete(a["id"], force=a.get("force", False))
    elif cmd == "pause":
        rt.pause(a["id"])
    elif cmd == "resume":
        rt.resume(a["id"])
    elif cmd == "list":
        _list(rt, a.get("format", "table"), a.get("quiet", False))
    elif cmd == "ps":
        _ps(rt, a["id"], a.get("format", "table"))
    elif cmd == "exec":
        from berth.runtime.run import exec_cli
        return exec_cli(rt, a)
    return 0


def _count(text: str) -> int:
    if not text.isdigit():
        from berth.errors import InvalidArgument
        raise InvalidArgument(f"--preserve-fds {text!r}: give a number of descriptors")
    return int(text)


def _list(rt: Any, fmt: str, quiet: bool) -> None:
    if fmt not in ("table", "json"):
        from berth.errors import InvalidArgument
        raise InvalidArgument(f"--format {fmt!r}: use table or json")
    items = rt.list()
    if quiet:
        for c in items:
            print(c["id"])
    elif fmt == "json":
        import json
        print(json.dumps(items))
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(c["id"], str(c["pid"]), c["status"], c["bundle"], c["created"], c["owner"])
                 for c in items]
        _table(rows)


def _ps(rt: Any, cid: str, fmt: str) -> None:
    pids = rt.pids(cid)
    if fmt == "json":
        import json
        print(json.dumps(pids))
        return
    rows = [("UID", "PID", "PPID", "STAT", "CMD")]
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                raw = f.read()
            rest = raw[raw.rindex(b")") + 2:].split()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        rows.append((str(uid), str(pid), rest[1].decode(), rest[0].decode(), cmd))
    _table(rows)


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _spec(bundle: str) -> int:
    from berth.errors import Conflict
    from berth.runtime.default_spec import default_config
    target = os.path.join(bundle, "config.json")
    if os.path.exists(target):
        raise Conflict(f"{target} exists: remove it first")
    import json
    with open(target, "x") as f:
        f.write(json.dumps(default_config(), indent="\t"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
