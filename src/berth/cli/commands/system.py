"""`berth system …`: check, df, events, info, prune."""

from __future__ import annotations

import sys

from berth.cli.args import Command, Flag

SUBCOMMANDS = {
    "check": "Verify every blob, layer and reference of the store; --repair mends them",
    "df": "Show berth disk usage",
    "events": "Get real time events from the server",
    "info": "Display system-wide information",
    "prune": "Remove unused data",
    "service": "Run the resident service that makes berth commands start fast",
}


def run(args: list[str]) -> int:
    from berth.cli.main import run_group
    return run_group("system", "Manage berth", SUBCOMMANDS, {}, args, dispatch)


def dispatch(name: str, args: list[str], path: str) -> int:
    from berth.cli.main import guarded
    if name == "events":  # its own module, also `berth events`
        from . import events
        return guarded(lambda: events.main(args, path))
    if name == "info":  # its own module, also `berth info`
        from . import info
        return guarded(lambda: info.main(args, path))
    if name in ("df", "prune"):  # with the other prunes in prune.py
        from . import prune
        fn = prune.df if name == "df" else prune.system_prune
        return guarded(lambda: fn(args, path))
    if name == "service":
        return guarded(lambda: _service(args, path))
    return guarded(lambda: _check(args, path))


SERVICE_HELP = """Run the resident service that makes berth commands start fast

In the foreground, until SIGTERM or SIGINT: it listens on $BERTH_RUN/berth.sock (mode 0600;
only its own user is served), with every berth module imported once. The `berth` script hands
each command (arguments, environment, working directory, umask and standard streams) to it,
and it runs the command in a forked process, so the command skips the interpreter start and
imports. Without the service, or with BERTH_NO_SERVICE=1, berth runs commands in process.
Stopping the service leaves running containers alone."""


def _service(args: list[str], path: str) -> int:
    from berth.cli import client, service
    from berth.engine.context import run_dir
    cmd = Command(path, "[OPTIONS]", SERVICE_HELP, [], max_args=0)
    cmd.parse(args)
    return service.main(client.socket_path({"BERTH_RUN": run_dir()}))


def _check(args: list[str], path: str) -> int:
    """Exit 0 when the store is sound (garbage alone is listed, not an error), 1 when damage
    was found (or remains after --repair)."""
    from berth.engine.context import image_store
    from berth.image import fsck
    cmd = Command(path, "[OPTIONS]", SUBCOMMANDS["check"], [
        Flag("repair", help="Remove or restore what is broken, and remove garbage"),
        Flag("quiet", "q", help="Print nothing; the exit status tells"),
    ], max_args=0)
    opts, _ = cmd.parse(args)
    store = image_store()
    report = fsck.check(store)
    out = [] if opts["quiet"] else report.lines()
    if opts["repair"] and report.problems:
        actions = fsck.repair(store, report)
        after = fsck.check(store)
        if not opts["quiet"]:
            out += [f"repaired: {a}" for a in actions] + [
                "after repair: " + line for line in after.lines()[-1:]]
        report = after
    sys.stdout.write("".join(line + "\n" for line in out))
    return 1 if report.damage else 0
