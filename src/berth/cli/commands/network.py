"""`berth network …`: connect, create, disconnect, inspect, ls, rm, prune, as the docker CLI
prints them.

Errors print "Error: …" on stderr and exit 1, as docker's CLI (125 for a flag that does not
parse; `rm` and `inspect` of several names go on past a failure and exit 1 when
some failed, as docker). `prune --dry-run` (berth's) lists what would go,
removing nothing.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from berth.cli.args import Command, Flag
from berth.errors import InvalidArgument

from .common import emit_inspect, for_each

SUBCOMMANDS = {
    "connect": "Connect a container to a network",
    "create": "Create a network",
    "disconnect": "Disconnect a container from a network",
    "inspect": "Display detailed information on one or more networks",
    "ls": "List networks",
    "prune": "Remove all unused networks",
    "rm": "Remove one or more networks",
}
ALIASES = {"list": "ls", "remove": "rm"}


def _networks() -> Any:
    from berth.engine.context import engine
    from berth.engine.networks import Networks
    return Networks(engine().db)


def run(args: list[str]) -> int:
    """`berth network SUBCOMMAND`."""
    from berth.cli.main import run_group
    return run_group("network", "Manage networks", SUBCOMMANDS, ALIASES, args, dispatch)


def dispatch(name: str, args: list[str], path: str) -> int:
    from berth.cli.main import guarded
    return guarded(lambda: _HANDLERS[name](args, path))


def _create(args: list[str], path: str) -> int:
    from berth.engine.options import parse_key_values
    cmd = Command(path, "[OPTIONS] NETWORK", SUBCOMMANDS["create"], [
        Flag("driver", "d", "string", default="bridge", help='Driver to manage the Network '
             '(default "bridge")'),
        Flag("gateway", value="string", help="IPv4 Gateway for the master subnet"),
        Flag("internal", help="Restrict external access to the network"),
        Flag("label", value="list", repeat=True, help="Set metadata on a network"),
        Flag("subnet", value="string", help="Subnet in CIDR format that represents a network "
             "segment"),
    ], min_args=1, max_args=1)
    opts, (name,) = cmd.parse(args)
    n = _networks().create(name, driver=opts["driver"], subnet=opts["subnet"],
                           gateway=opts["gateway"], internal=opts["internal"],
                           labels=parse_key_values(opts["label"], "label"))
    print(n.id)
    return 0


def _connect(args: list[str], path: str) -> int:
    from berth.engine.context import engine
    from berth.engine.networks import connect
    cmd = Command(path, "[OPTIONS] NETWORK CONTAINER", SUBCOMMANDS["connect"], [
        Flag("alias", value="strings", repeat=True, help="Add network-scoped alias for the "
             "container"),
        Flag("ip", value="string", help="IPv4 address (e.g., 172.30.100.104)"),
    ], min_args=2, max_args=2)
    opts, (network, container) = cmd.parse(args)
    eng = engine()
    connect(eng.db, str(eng.root), str(eng.run), network, container, ip=opts["ip"],
            aliases=opts["alias"])
    return 0


def _disconnect(args: list[str], path: str) -> int:
    from berth.engine.context import engine
    from berth.engine.networks import disconnect
    cmd = Command(path, "[OPTIONS] NETWORK CONTAINER", SUBCOMMANDS["disconnect"], [
        Flag("force", "f", help="Force the container to disconnect from a network"),
    ], min_args=2, max_args=2)
    opts, (network, container) = cmd.parse(args)
    eng = engine()
    disconnect(eng.db, str(eng.run), network, container, force=opts["force"])
    return 0


def _inspect(args: list[str], path: str) -> int:
    cmd = Command(path, "[OPTIONS] NETWORK [NETWORK...]", SUBCOMMANDS["inspect"], [
        Flag("format", "f", "string", help="Format output using a custom template"),
    ], min_args=1)
    opts, names = cmd.parse(args)
    return emit_inspect(names, _networks().inspect, opts["format"])


_LS_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
               "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
               "CreatedAt": "CREATED AT"}


def _ls(args: list[str], path: str) -> int:
    from berth.cli import format as fmt
    from berth.engine.networks import PREDEFINED, labels_match
    cmd = Command(path, "[OPTIONS]", SUBCOMMANDS["ls"], [
        Flag("filter", "f", "filter", repeat=True, help="Provide filter values (e.g. "
             "\"driver=bridge\")"),
        Flag("format", value="string", help="Format output using a custom template"),
        Flag("no-trunc", help="Do not truncate the output"),
        Flag("quiet", "q", help="Only display network IDs"),
    ], max_args=0, aliases=("berth network ls", "berth network list"))
    opts, _ = cmd.parse(args)
    filters = fmt.parse_filters(opts["filter"], {"driver", "id", "label", "name", "scope",
                                                 "type"})
    nets = _networks()
    items = nets.list()
    if "name" in filters:
        items = [n for n in items if any(_search(p, n.name) for p in filters["name"])]
    if "id" in filters:
        items = [n for n in items if any(n.id.startswith(p) for p in filters["id"])]
    if "driver" in filters:
        items = [n for n in items if n.driver in filters["driver"]]
    if "label" in filters:
        items = [n for n in items if labels_match(n.labels, filters["label"])]
    if "scope" in filters:
        items = [n for n in items if "local" in filters["scope"]]
    for value in filters.get("type", []):
        if value not in ("custom", "builtin"):
            raise InvalidArgument(f"invalid filter: 'type'='{value}'")
        items = [n for n in items if (n.name in PREDEFINED) == (value == "builtin")]
    rows = [fmt.Row({"ID": n.id if opts["no_trunc"] else n.short_id, "Name": n.name,
                     "Driver": n.driver, "Scope": "local", "IPv6": "false",
                     "Internal": str(n.internal).lower(),
                     "Labels": ",".join(f"{k}={x}" for k, x in sorted(n.labels.items())),
                     "CreatedAt": fmt.rfc3339(n.created_ns / 1e9)}) for n in items]
    if opts["quiet"] and not opts["format"]:
        sys.stdout.write("".join(r["ID"] + "\n" for r in rows))
        return 0
    sys.stdout.write(fmt.render(rows, opts["format"], default_table="table {{.ID}}\t{{.Name}}"
                                "\t{{.Driver}}\t{{.Scope}}", headers=_LS_HEADERS))
    return 0


def _search(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return pattern in name


def _rm(args: list[str], path: str) -> int:
    cmd = Command(path, "NETWORK [NETWORK...]", SUBCOMMANDS["rm"], [
        Flag("force", "f", help="Do not error if the network does not exist"),
    ], min_args=1, aliases=("berth network rm", "berth network remove"))
    opts, names = cmd.parse(args)
    nets = _networks()

    def one(name: str) -> str | None:
        from berth.engine.networks import NoSuchNetwork
        try:
            nets.remove(name)
        except NoSuchNetwork:
            if opts["force"]:
                return None
            raise
        return name
    return for_each(names, one)


_WARNING = ("WARNING! This will remove all custom networks not used by at least one "
            "container.\nAre you sure you want to continue? [y/N] ")


def _prune(args: list[str], path: str) -> int:
    from berth.cli import format as fmt
    from berth.engine.system import parse_prune_filters
    cmd = Command(path, "[OPTIONS]", SUBCOMMANDS["prune"], [
        Flag("dry-run", help="Only list the networks that would be removed (berth)"),
        Flag("filter", value="filter", repeat=True, help='Provide filter values (e.g. '
             '"until=<timestamp>")'),
        Flag("force", "f", help="Do not prompt for confirmation"),
    ], max_args=0)
    opts, _ = cmd.parse(args)
    f = parse_prune_filters(fmt.parse_filters(opts["filter"]), {"label", "label!", "until"})
    nets = _networks()
    kw = {"labels": f.labels, "not_labels": f.not_labels, "until_ns": f.until_ns}
    if opts["dry_run"]:
        plan = nets.prune(dry_run=True, **kw)
        if plan:
            sys.stdout.write("Would remove:\n" + "".join(n + "\n" for n in plan))
        return 0
    if not opts["force"]:
        sys.stdout.write(_WARNING)
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() != "y":
            return 0
    gone = nets.prune(**kw)
    if gone:
        sys.stdout.write("Deleted Networks:\n" + "".join(n + "\n" for n in gone))
    return 0


_HANDLERS = {"connect": _connect, "create": _create, "disconnect": _disconnect,
             "inspect": _inspect, "ls": _ls, "rm": _rm, "prune": _prune}
