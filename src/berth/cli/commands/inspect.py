"""`berth inspect`: docker's object-agnostic inspect. Each name is looked up as a container,
then an image, then a volume (docker's order), unless `--type` says which; the names of one
kind are inspected by that kind's own command, so the JSON is the same as `container inspect`,
`image inspect` or `volume inspect` prints."""

from __future__ import annotations

import sys

from berth.cli.args import Command, Flag
from berth.errors import BerthError, InvalidArgument

SUMMARY = "Return low-level information on berth objects"
KINDS = ("container", "image", "volume")


def run(args: list[str]) -> int:
    from berth.cli.main import guarded
    return guarded(lambda: _inspect(args))


def _kind(name: str, want: str) -> str | None:
    from berth.engine.context import engine
    eng = engine()
    for kind in ([want] if want else KINDS):
        try:
            if kind == "container":
                eng.get(name)
            elif kind == "image":
                eng.images.resolve(name)
            else:
                from berth.engine.volumes import Volumes
                Volumes(eng.db, eng.root).get(name)
            return kind
        except BerthError:
            continue
    return None


def _inspect(args: list[str]) -> int:
    cmd = Command("berth inspect", "[OPTIONS] NAME|ID [NAME|ID...]", SUMMARY, [
        Flag("format", "f", "string", help="Format output using a custom template"),
        Flag("size", "s", help="Display total file sizes if the type is container"),
        Flag("type", value="string", help="Only inspect objects of the given type "
             "(container, image, volume)"),
    ], min_args=1)
    opts, names = cmd.parse(args)
    want = opts["type"]
    if want and want not in KINDS:
        raise InvalidArgument(f'"{want}" is not a valid value for --type')
    kinds = {n: _kind(n, want) for n in names}
    missing = [n for n, k in kinds.items() if k is None]
    found = [k for k in kinds.values() if k is not None]
    flags = (["--format", opts["format"]] if opts["format"] else [])
    code = 0
    if found:
        if len(set(found)) > 1:  # mixed kinds: each name by itself, in order
            groups = [(k, [n]) for n, k in kinds.items() if k is not None]
        else:
            groups = [(found[0], [n for n in names if kinds[n] is not None])]
        for kind, group in groups:
            extra = ["--size"] if opts["size"] and kind == "container" else []
            module = {"container": "container", "image": "image", "volume": "volume"}[kind]
            mod = __import__(f"berth.cli.commands.{module}", fromlist=["dispatch"])
            code = mod.dispatch("inspect", [*flags, *extra, *group],
                                f"berth {kind} inspect") or code
    for n in missing:
        print(f"Error: No such object: {n}", file=sys.stderr)
        code = 1
    if not found:
        print("[]")
    return code
