"""`berth` entry point: the COMMANDS table, global flags, exit codes.

Start-up stays lean: `berth --help` and `berth --version` import no command module; a command
imports only its own module (pip's commands_dict pattern). Commands arrive with the issues that
build them (containers, images, builder, networks, system); this table lists what exists.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "version": ("berth.cli.commands.version", "Show the berth version information"),
}

USAGE = """Usage:  berth [OPTIONS] COMMAND

A container engine: OCI runtime, layered image store and a docker-compatible CLI

Options:
  -h, --help       Print usage
  -v, --version    Print version information and quit

Commands:
{commands}

The OCI runtime itself is `berth-runtime` (runc's command line).
"""


def usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = "\n".join(f"  {n.ljust(width)}  {h}" for n, (_, h) in sorted(COMMANDS.items()))
    return USAGE.format(commands=lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage(), end="")
        return 0 if args else 1
    if args[0] in ("-v", "--version"):
        from berth import __version__
        print(f"berth version {__version__}")
        return 0
    name = args[0]
    if name not in COMMANDS:
        print(f"berth: '{name}' is not a berth command.\nSee 'berth --help'", file=sys.stderr)
        return 125
    module = importlib.import_module(COMMANDS[name][0])
    code: int = module.run(args[1:])
    return code


if __name__ == "__main__":
    sys.exit(main())
