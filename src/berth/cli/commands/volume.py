"""`berth volume …`: create, inspect, ls, rm, prune, as the docker CLI prints them.

Errors print "Error: …" on stderr and exit 1, as docker's CLI (125 for a flag that does not
parse; `rm` and `inspect` of several names go on past a failure). `prune --dry-run` (berth's) lists what would go
and its size, removing nothing.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from berth.cli.args import Command, Flag
from berth.errors import InvalidArgument

from .common import emit_inspect, for_each

SUBCOMMANDS = {
    "create": "Create a volume",
    "inspect": "Display detailed information on one or more volumes",
    "ls": "List volumes",
    "prune": "Remove unused local volumes",
    "rm": "Remove one or more volumes",
}
ALIASES = {"list": "ls", "remove": "rm"}


def _volumes() -> Any:
    from berth.engine.context import engine
    from berth.engine.volumes import Volumes
    eng = engine()
    return Volumes(eng.db, eng.root)


def run(args: list[str]) -> int:
    """`berth volume SUBCOMMAND`."""
    from berth.cli.main import run_group
    return run_group("volume", "Manage volumes", SUBCOMMANDS, ALIASES, args, dispatch)


def dispatch(name: str, args: list[str], path: str) -> int:
    from berth.cli.main import guarded
    return guarded(lambda: _HANDLERS[name](args, path))


def _create(args: list[str], path: str) -> int:
    from berth.engine.options import parse_key_values
    cmd = Command(path, "[OPTIONS] [VOLUME]", SUBCOMMANDS["create"], [
        Flag("driver", "d", "string", default="local", help='Specify volume driver name '
             '(default "local")'),
        Flag("label", value="list", repeat=True, help="Set metadata for a volume"),
        Flag("name", value="string", help="Specify volume name"),
        Flag("opt", "o", "map", repeat=True, help="Set driver specific options (default map[])"),
    ], max_args=1)
    opts, rest = cmd.parse(args)
    if rest and opts["name"]:
        raise InvalidArgument("conflicting options: cannot specify a volume-name through both "
                              "--name and as a positional arg")
    name = rest[0] if rest else opts["name"]
    vol = _volumes().create(name, driver=opts["driver"],
                            labels=parse_key_values(opts["label"], "label"),
                            options=parse_key_values(opts["opt"], "option"))
    print(vol.name)
    return 0


def _inspect(args: list[str], path: str) -> int:
    cmd = Command(path, "[OPTIONS] VOLUME [VOLUME...]", SUBCOMMANDS["inspect"], [
        Flag("format", "f", "string", help="Format output using a custom template"),
    ], min_args=1)
    opts, names = cmd.parse(args)
    return emit_inspect(names, _volumes().inspect, opts["format"])


_LS_HEADERS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE",
               "Mountpoint": "MOUNTPOINT", "Labels": "LABELS", "Links": "LINKS",
               "Size": "SIZE"}


def _ls(args: list[str], path: str) -> int:
    from berth.cli import format as fmt
    cmd = Command(path, "[OPTIONS]", SUBCOMMANDS["ls"], [
        Flag("filter", "f", "filter", repeat=True, help="Provide filter values (e.g. "
             "\"dangling=true\")"),
        Flag("format", value="string", help="Format output using a custom template"),
        Flag("quiet", "q", help="Only display volume names"),
    ], max_args=0, aliases=("berth volume ls", "berth volume list"))
    opts, _ = cmd.parse(args)
    filters = fmt.parse_filters(opts["filter"], {"dangling", "name", "driver", "label"})
    vols = _volumes()
    items = vols.list()
    used = vols.used_names()
    for value in filters.get("dangling", []):
        if value.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={value}'")
        want = value.lower() in ("true", "1")
        items = [v for v in items if (v.name not in used) == want]
    if "name" in filters:
        pats = filters["name"]
        items = [v for v in items if any(_search(p, v.name) for p in pats)]
    if "driver" in filters:
        items = [v for v in items if v.driver in filters["driver"]]
    if "label" in filters:
        from berth.engine.volumes import labels_match
        items = [v for v in items if labels_match(v.labels, filters["label"])]
    rows = [fmt.Row({"Name": v.name, "Driver": v.driver, "Scope": "local",
                     "Mountpoint": vols.mountpoint(v.name),
                     "Labels": ",".join(f"{k}={x}" for k, x in sorted(v.labels.items())),
                     "Links": "N/A", "Size": "N/A"}) for v in items]
    if opts["quiet"] and not opts["format"]:
        sys.stdout.write("".join(r["Name"] + "\n" for r in rows))
        return 0
    sys.stdout.write(fmt.render(rows, opts["format"], default_table="table {{.Driver}}\t"
                                "{{.Name}}", headers=_LS_HEADERS))
    return 0


def _search(pattern: str, name: str) -> bool:
    """docker's filter Match: the value as a regular expression searched in the name (a value
    that is not one matches literally)."""
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return pattern in name


def _rm(args: list[str], path: str) -> int:
    cmd = Command(path, "[OPTIONS] VOLUME [VOLUME...]", "Remove one or more volumes. You "
                  "cannot remove a volume that is in use by a container.", [
                      Flag("force", "f", help="Force the removal of one or more volumes"),
                  ], min_args=1, aliases=("berth volume rm", "berth volume remove"))
    opts, names = cmd.parse(args)
    vols = _volumes()
    return for_each(names, lambda n: (vols.remove(n, force=opts["force"]), n)[1])


_WARNING = ("WARNING! This will remove anonymous local volumes not used by at least one "
            "container.\nAre you sure you want to continue? [y/N] ")
_WARNING_ALL = ("WARNING! This will remove all local volumes not used by at least one "
                "container.\nAre you sure you want to continue? [y/N] ")


def _prune(args: list[str], path: str) -> int:
    from berth.cli import format as fmt
    cmd = Command(path, "[OPTIONS]", SUBCOMMANDS["prune"], [
        Flag("all", "a", help="Remove all unused volumes, not just anonymous ones"),
        Flag("dry-run", help="Only list the volumes that would be removed (berth)"),
        Flag("filter", value="filter", repeat=True, help='Provide filter values (e.g. '
             '"label=<label>")'),
        Flag("force", "f", help="Do not prompt for confirmation"),
    ], max_args=0)
    opts, _ = cmd.parse(args)
    filters = fmt.parse_filters(opts["filter"], {"label", "label!", "all"})
    everything = opts["all"]
    if "all" in filters:
        if everything:
            raise InvalidArgument("conflicting options: cannot specify both --all and "
                                  "--filter all=1")
        if len(filters["all"]) > 1:
            raise InvalidArgument(f"invalid filter 'all={filters['all']}': only one value "
                                  "is expected")
        value = filters["all"][0].lower()
        if value not in ("1", "0", "t", "f", "true", "false"):
            raise InvalidArgument(f'invalid filter \'all\': strconv.ParseBool: parsing '
                                  f'"{filters["all"][0]}": invalid syntax')
        everything = value in ("1", "t", "true")
    vols = _volumes()
    if opts["dry_run"]:
        plan, total = vols.prune(all=everything, filters=filters, dry_run=True)
        if plan:
            sys.stdout.write("Would remove:\n" + "".join(
                f"{name}\t{fmt.human_size(size)}\n" for name, size in plan) + "\n")
        print(f"Total reclaimable space: {fmt.human_size(total)}")
        return 0
    if not opts["force"]:
        sys.stdout.write(_WARNING_ALL if everything else _WARNING)
        sys.stdout.flush()
        answer = sys.stdin.readline().strip()
        if answer.lower() != "y":
            return 0
    done, reclaimed = vols.prune(all=everything, filters=filters)
    if done:
        sys.stdout.write("Deleted Volumes:\n" + "".join(n + "\n" for n, _ in done) + "\n")
    print(f"Total reclaimed space: {fmt.human_size(reclaimed)}")
    return 0


_HANDLERS = {"create": _create, "inspect": _inspect, "ls": _ls, "rm": _rm, "prune": _prune}
