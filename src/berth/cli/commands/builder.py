"""`berth builder …`: build, prune."""

from __future__ import annotations

from .build import SUMMARY

SUBCOMMANDS = {"build": SUMMARY, "prune": "Remove build cache"}


def run(args: list[str]) -> int:
    from berth.cli.main import run_group
    return run_group("builder", "Manage builds", SUBCOMMANDS, {}, args, dispatch)


def dispatch(name: str, args: list[str], path: str) -> int:
    if name == "prune":
        from berth.cli.main import guarded

        from .prune import builder_prune
        return guarded(lambda: builder_prune(args, path))
    from .build import main
    return main(args, path)
