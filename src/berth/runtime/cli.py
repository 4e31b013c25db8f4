"""`berth-runtime`: the OCI runtime command line (runc's grammar) over berth.runtime.container.

Options come before the container id; the bundle defaults to the current directory. Errors go
to stderr as `berth-runtime: <message>` with exit status 1, as runc does; `run` passes the
container's own exit status through (128+N when a signal N killed it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = """berth-runtime [--root DIR] COMMAND [OPTIONS] ID

Commands:
  create   create a container from a bundle (stopped before the user process)
  start    run the user process of a created container
  run      create, start and wait; the exit status is the container's
  state    print the state of a container (OCI JSON)
  kill     send a signal (default SIGTERM) to the container's init
  delete   delete a stopped container (--force kills it first)
  exec     run a new process inside a running container
  ps       list the processes of a container
  list     list containers
  pause    freeze every process of a container
  resume   thaw a paused container
  spec     write a default config.json
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="berth-runtime", usage=USAGE, add_help=True)
    p.add_argument("--root", help="state directory (default $BERTH_RUN/runtime)")
    for compat in ("--log", "--log-format", "--criu", "--rootless"):
        p.add_argument(compat, help=argparse.SUPPRESS)
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--systemd-cgroup", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--version", "-v", action="store_true", help="print the version")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    def bundle_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--bundle", "-b", default=".", help="bundle directory (default .)")
        sp.add_argument("--pid-file", help="write the init's pid here")
        sp.add_argument("--console-socket", help="unix socket that receives the pty master")
        sp.add_argument("--no-pivot", action="store_true", help=argparse.SUPPRESS)
        sp.add_argument("--no-new-keyring", action="store_true", help=argparse.SUPPRESS)
        sp.add_argument("--preserve-fds", type=int, default=0, help=argparse.SUPPRESS)

    sp = sub.add_parser("create", help="create a container")
    bundle_args(sp)
    sp.add_argument("id")
    sp = sub.add_parser("run", help="create, start and wait")
    bundle_args(sp)
    sp.add_argument("--detach", "-d", action="store_true", help="do not wait")
    sp.add_argument("--keep", action="store_true", help="do not delete after exit")
    sp.add_argument("id")
    for name in ("start", "state", "pause", "resume"):
        sub.add_parser(name).add_argument("id")
    sp = sub.add_parser("kill")
    sp.add_argument("--all", "-a", action="store_true", help="signal every process")
    sp.add_argument("id")
    sp.add_argument("signal", nargs="?", default="SIGTERM")
    sp = sub.add_parser("delete")
    sp.add_argument("--force", "-f", action="store_true")
    sp.add_argument("id")
    sp = sub.add_parser("exec")
    sp.add_argument("--tty", "-t", action="store_true")
    sp.add_argument("--env", "-e", action="append", default=[])
    sp.add_argument("--cwd")
    sp.add_argument("--user", "-u")
    sp.add_argument("--process", "-p")
    sp.add_argument("--detach", "-d", action="store_true")
    sp.add_argument("--pid-file")
    sp.add_argument("--console-socket")
    sp.add_argument("id")
    sp.add_argument("command", nargs=argparse.REMAINDER)
    sp = sub.add_parser("ps")
    sp.add_argument("--format", "-f", default="table", choices=("table", "json"))
    sp.add_argument("id")
    sp = sub.add_parser("list")
    sp.add_argument("--format", "-f", default="table", choices=("table", "json"))
    sp.add_argument("--quiet", "-q", action="store_true")
    sp = sub.add_parser("spec")
    sp.add_argument("--bundle", "-b", default=".")
    return p


def parse_signal(text: str) -> int:
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
    args = _parser().parse_args(argv)
    if args.version:
        from berth import __version__
        print(f"berth-runtime version {__version__}\nspec: 1.0.2")
        return 0
    if not args.cmd:
        _parser().print_help()
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


def _dispatch(args: argparse.Namespace) -> int:
    from berth.runtime.container import CreateOptions, Runtime
    from berth.runtime.state import default_root
    rt = Runtime(args.root or default_root())
    cmd = args.cmd
    if cmd == "spec":
        return _spec(args.bundle)
    if cmd == "create":
        rt.create(args.id, args.bundle,
                  CreateOptions(console_socket=args.console_socket, pid_file=args.pid_file))
        return 0
    if cmd == "run":
        from berth.runtime.run import run
        return run(rt, args.id, args.bundle, detach=args.detach,
                   console_socket=args.console_socket, pid_file=args.pid_file, keep=args.keep)
    if cmd == "start":
        rt.start(args.id)
    elif cmd == "state":
        print(json.dumps(rt.state(args.id), indent=2))
    elif cmd == "kill":
        rt.kill(args.id, parse_signal(args.signal), all_processes=args.all)
    elif cmd == "delete":
        rt.delete(args.id, force=args.force)
    elif cmd == "pause":
        rt.pause(args.id)
    elif cmd == "resume":
        rt.resume(args.id)
    elif cmd == "list":
        _list(rt, args)
    elif cmd == "ps":
        _ps(rt, args)
    elif cmd == "exec":
        from berth.runtime.run import exec_cli
        return exec_cli(rt, args)
    return 0


def _list(rt: Any, args: argparse.Namespace) -> None:
    items = rt.list()
    if args.quiet:
        for c in items:
            print(c["id"])
    elif args.format == "json":
        print(json.dumps(items))
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(c["id"], str(c["pid"]), c["status"], c["bundle"], c["created"], c["owner"])
                 for c in items]
        _table(rows)


def _ps(rt: Any, args: argparse.Namespace) -> None:
    pids = rt.pids(args.id)
    if args.format == "json":
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
    with open(target, "x") as f:
        f.write(json.dumps(default_config(), indent="\t"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
