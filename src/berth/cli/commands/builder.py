"""`berth builder …`: build (prune comes with the system commands)."""

from __future__ import annotations

from .build import SUMMARY

SUBCOMMANDS = {"build": SUMMARY}


def run(args: list[str]) -> int:
    from berth.cli.main import run_group

    from .build import main
    return run_group("builder", "Manage builds", SUBCOMMANDS, {}, args,
                     lambda name, rest, path: main(rest, path))
