"""`berth system …`: check (and later df, prune, events, info)."""

from __future__ import annotations

import sys

from berth.cli.args import Command, Flag

SUBCOMMANDS = {
    "check": "Verify every blob, layer and reference of the store; --repair mends them",
}


def run(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        width = max(map(len, SUBCOMMANDS))
        lines = "\n".join(f"  {k.ljust(width)}  {v}" for k, v in SUBCOMMANDS.items())
        print(f"Usage:  berth system COMMAND\n\nManage berth\n\nCommands:\n{lines}\n\n"
              "Run 'berth system COMMAND --help' for more information on a command.")
        return 0 if args else 1
    if args[0] not in SUBCOMMANDS:
        print(f"berth: 'system {args[0]}' is not a berth command.\nSee 'berth system --help'",
              file=sys.stderr)
        return 125
    from berth.cli.main import guarded
    return guarded(lambda: _check(args[1:], "berth system check"))


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
