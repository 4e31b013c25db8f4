"""The prunes (`container prune`, `image prune`, `builder prune`, `system prune`) and `system
df`: docker's flags, warnings, reports and tables over engine/system.py.

A prune asks docker's question unless `-f` (anything but y/Y, or no answer, cancels: nothing
printed, exit 1, as docker); `--dry-run` (beyond docker) prints what the prune would delete
and the space it would free, asks nothing and changes nothing.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from berth.cli.args import Command, Flag

CONTAINER_WARNING = ("WARNING! This will remove all stopped containers.\n"
                     "Are you sure you want to continue?")
IMAGE_WARNING = "WARNING! This will remove all dangling images.\nAre you sure you want to continue?"
IMAGE_ALL_WARNING = ("WARNING! This will remove all images without at least one container "
                     "associated to them.\nAre you sure you want to continue?")
BUILDER_WARNING = ("WARNING! This will remove all dangling build cache. "
                   "Are you sure you want to continue?")
BUILDER_ALL_WARNING = "WARNING! This will remove all build cache. Are you sure you want to continue?"

_FORCE = Flag("force", "f", help="Do not prompt for confirmation")
_DRY_RUN = Flag("dry-run", help="Show what would be removed and the space it would free; "
                "remove nothing")


def _filter_flag(example: str) -> Flag:
    return Flag("filter", value="filter", repeat=True,
                help=f'Provide filter values (e.g. "{example}")')


def _engine() -> Any:
    from berth.engine.context import engine
    return engine()


def confirm(message: str) -> bool:
    """docker's prompt.Confirm: the message, " [y/N] ", one line of stdin."""
    sys.stdout.write(message + " [y/N] ")
    sys.stdout.flush()
    line = sys.stdin.readline()
    return line.strip().lower() == "y"


def _size(n: int) -> str:
    from berth.cli.format import human_size
    return human_size(n, 4)  # go-units HumanSize


def _filters(opts: dict[str, Any], accepted: frozenset[str]) -> Any:
    from berth.cli import format as fmt
    from berth.engine.system import parse_prune_filters
    return parse_prune_filters(fmt.parse_filters(opts["filter"]), accepted)


def _sections(report: Any, *, dry: bool) -> list[str]:
    """docker's report blocks, each followed by an empty line."""
    head = "Would delete " if dry else "Deleted "
    out = []
    if report["containers"]:
        out.append(f"{head}Containers:\n" + "".join(c + "\n" for c in report["containers"]))
    if report.get("volumes"):
        out.append(f"{head}Volumes:\n" + "".join(v + "\n" for v in report["volumes"]))
    if report["images"]:
        out.append(f"{head}Images:\n" + "".join(f"{kind.lower()}: {ident}\n"
                                                for kind, ident in report["images"]))
    if report["cache"]:
        out.append(f"{head if dry else 'Deleted '}build cache objects:\n"
                   + "".join(k + "\n" for k in report["cache"]))
    return [s + "\n" for s in out]


def _total(reclaimed: int, *, dry: bool) -> str:
    if dry:
        return f"Total space that would be reclaimed: {_size(reclaimed)} ({reclaimed} bytes)\n"
    return f"Total reclaimed space: {_size(reclaimed)}\n"


def _plan_report(plan: Any) -> dict[str, Any]:
    from berth.engine import system as sysmod
    rep: dict[str, Any] = {"containers": [], "images": [], "cache": []}
    rep["volumes"] = []
    parts = [plan] if not isinstance(plan, sysmod.SystemPlan) else \
        [plan.containers, plan.volumes, plan.images, plan.builder]
    for p in parts:
        if isinstance(p, sysmod.ContainerPlan):
            rep["containers"] += [c.id for c in p.remove]
        elif isinstance(p, sysmod.VolumePlan):
            rep["volumes"] += [v.name for v in p.remove]
        elif isinstance(p, sysmod.ImagePlan):
            rep["images"] += p.records
        elif isinstance(p, sysmod.BuilderPlan):
            rep["cache"] += [k.removeprefix("sha256:") for k in p.cache_keys]
    return rep


def _run(plan_fn: Any, opts: dict[str, Any], warning: str, *, labels: bool) -> int:
    """Plan, then print the plan (--dry-run) or ask, apply and print what was done."""
    from berth.engine import system as sysmod
    eng = _engine()
    if not opts["dry_run"] and not opts["force"] and not confirm(warning):
        return 1
    snap = sysmod.load_snapshot(eng.db, eng.root)
    label_fn = sysmod.image_labels(eng) if labels else None
    plan = plan_fn(snap, label_fn)
    if opts["dry_run"]:
        sys.stdout.write("".join(_sections(_plan_report(plan), dry=True))
                         + _total(plan.reclaimed, dry=True))
        return 0
    done = sysmod.apply(eng, snap, plan)
    rep = {"containers": done.containers, "volumes": done.volumes, "images": done.images,
           "cache": done.cache}
    sys.stdout.write("".join(_sections(rep, dry=False)) + _total(done.reclaimed, dry=False))
    return 0


def container_prune(args: list[str], path: str) -> int:
    from berth.engine import system as sysmod
    cmd = Command(path, "[OPTIONS]", "Remove all stopped containers", [
        _filter_flag("until=<timestamp>"), _FORCE, _DRY_RUN], max_args=0)
    opts, _ = cmd.parse(args)
    filters = _filters(opts, sysmod.CONTAINER_FILTERS)
    return _run(lambda snap, _labels: sysmod.plan_container_prune(snap, filters), opts,
                CONTAINER_WARNING, labels=False)


def image_prune(args: list[str], path: str) -> int:
    from berth.engine import system as sysmod
    cmd = Command(path, "[OPTIONS]", "Remove unused images", [
        Flag("all", "a", help="Remove all unused images, not just dangling ones"),
        _filter_flag("until=<timestamp>"), _FORCE, _DRY_RUN], max_args=0)
    opts, _ = cmd.parse(args)
    filters = _filters(opts, sysmod.IMAGE_FILTERS)
    everything = opts["all"]
    for v in filters.raw.get("dangling", ()):  # docker: the flag's dangling=!all, then these
        everything = everything or v.lower() in ("false", "0")
    return _run(lambda snap, labels: sysmod.plan_image_prune(
        snap, filters, all=everything, labels=labels or sysmod._no_labels), opts,
        IMAGE_ALL_WARNING if everything else IMAGE_WARNING, labels=filters.uses_labels)


def builder_prune(args: list[str], path: str) -> int:
    from berth.engine import system as sysmod
    cmd = Command(path, "", "Remove build cache", [
        Flag("all", "a", help="Remove all unused build cache, not just dangling ones"),
        _filter_flag("until=24h"), _FORCE, _DRY_RUN], max_args=0)
    opts, _ = cmd.parse(args)
    filters = _filters(opts, sysmod.BUILDER_FILTERS)
    return _run(lambda snap, labels: sysmod.plan_builder_prune(
        snap, filters, all=opts["all"], labels=labels or sysmod._no_labels), opts,
        BUILDER_ALL_WARNING if opts["all"] else BUILDER_WARNING, labels=filters.uses_labels)


def system_warning(everything: bool, raw_filters: dict[str, tuple[str, ...]],
                   volumes: bool = False) -> str:
    """docker's confirmationTemplate (networks: not in berth yet, so not named)."""
    warnings = ["all stopped containers",
                *(["all anonymous volumes not used by at least one container"] if volumes
                  else []),
                "all images without at least one container associated to them" if everything
                else "all dangling images",
                "all build cache" if everything else "unused build cache"]
    text = "WARNING! This will remove:" + "".join(f"\n  - {w}" for w in warnings) + "\n"
    shown = sorted((f"{k}={v}" for k in ("label", "label!", "until")
                    for v in raw_filters.get(k, ())), key=_natural)
    if shown:
        text += "\n  Items to be pruned will be filtered with:" + "".join(
            f"\n  - {f}" for f in shown) + "\n"
    return text + "\nAre you sure you want to continue?"


def _natural(s: str) -> list[Any]:
    import re
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s)]


def system_prune(args: list[str], path: str) -> int:
    from berth.engine import system as sysmod
    cmd = Command(path, "[OPTIONS]", "Remove unused data", [
        Flag("all", "a", help="Remove all unused images not just dangling ones"),
        _filter_flag("label=<key>=<value>"), _FORCE,
        Flag("volumes", help="Prune anonymous volumes"), _DRY_RUN], max_args=0)
    opts, _ = cmd.parse(args)
    filters = _filters(opts, sysmod.SYSTEM_FILTERS)
    if opts["volumes"] and filters.until_ns is not None:
        from berth.errors import InvalidArgument
        raise InvalidArgument('ERROR: The "until" filter is not supported with "--volumes"')
    return _run(lambda snap, labels: sysmod.plan_system_prune(
        snap, filters, all=opts["all"], volumes=opts["volumes"],
        labels=labels or sysmod._no_labels), opts,
        system_warning(opts["all"], dict(filters.raw), opts["volumes"]),
        labels=filters.uses_labels)


# --- df --------------------------------------------------------------------------------------

_DF_HEADERS = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
               "Reclaimable": "RECLAIMABLE"}
_DF_TABLE = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
_IMAGE_TABLE = ("table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t"
                "{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}")
_CONTAINER_TABLE = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t"
                    "{{.RunningFor}}\t{{.Status}}\t{{.Names}}")
_VOLUME_TABLE = "table {{.Name}}\t{{.Links}}\t{{.Size}}"
_CACHE_TABLE = ("table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t"
                "{{.LastUsedSince}}\t{{.UsageCount}}\t{{.Shared}}")
_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID",
            "CreatedSince": "CREATED", "Size": "SIZE", "SharedSize": "SHARED SIZE",
            "UniqueSize": "UNIQUE SIZE", "Containers": "CONTAINERS"}
_C_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
              "LocalVolumes": "LOCAL VOLUMES", "Size": "SIZE", "RunningFor": "CREATED",
              "Status": "STATUS", "Names": "NAMES"}
_V_HEADERS = {"Name": "VOLUME NAME", "Links": "LINKS", "Size": "SIZE"}
_B_HEADERS = {"ID": "CACHE ID", "CacheType": "CACHE TYPE", "Size": "SIZE",
              "CreatedSince": "CREATED", "LastUsedSince": "LAST USED", "UsageCount": "USAGE",
              "Shared": "SHARED"}


def _usage_row(u: Any) -> dict[str, str]:
    rec = _size(u.reclaimable)
    if u.percent and u.size > 0:
        rec += f" ({u.reclaimable * 100 // u.size}%)"
    return {"Type": u.type, "TotalCount": str(u.total), "Active": str(u.active),
            "Size": _size(u.size), "Reclaimable": rec}


def _status(c: Any, now: float) -> str:
    from berth.cli.format import human_duration
    if c.status == "running":
        return "Up " + human_duration(now - c.started_ns / 1e9)
    if c.status == "exited":
        return f"Exited ({c.exit_code}) {human_duration(now - c.finished_ns / 1e9)} ago"
    if c.status == "restarting":
        return f"Restarting ({c.exit_code}) {human_duration(now - c.finished_ns / 1e9)} ago"
    return "Dead" if c.status == "dead" else "Created"


def _verbose_rows(du: Any, snap: Any, trunc: bool) -> dict[str, list[dict[str, str]]]:
    import json

    from berth.cli import format as fmt
    from berth.oci import reference as refs
    now = time.time()
    images = []
    for u in du.images:
        repo, tag = "<none>", "<none>"
        if u.image.tags:
            repo, _, tag = refs.parse(u.image.tags[0]).familiar().rpartition(":")
        from berth.engine.system import _rfc3339_ns
        created = _rfc3339_ns(u.image.created) / 1e9
        images.append({
            "Repository": repo, "Tag": tag,
            "ID": u.image.id.removeprefix("sha256:")[:12] if trunc else u.image.id,
            "CreatedSince": fmt.since(created, now) if created else "",
            "Size": fmt.human_size(u.size), "SharedSize": _size(u.shared_size),
            "UniqueSize": _size(u.size - u.shared_size), "Containers": str(u.containers)})
    containers = []
    for c in du.containers:
        command = " ".join(c.command)
        containers.append({
            "ID": c.id[:12] if trunc else c.id, "Image": c.image_ref or "<no image>",
            "Command": json.dumps(fmt.ellipsis(command, 20) if trunc else command,
                                  ensure_ascii=False),
            "LocalVolumes": str(c.volumes), "Size": fmt.human_size(c.size_rw),
            "RunningFor": fmt.since(c.created_ns / 1e9, now), "Status": _status(c, now),
            "Names": c.name})
    cache = []
    for u in du.cache:
        r = u.record
        cache.append({
            "ID": (r.id[:12] if trunc else r.id) + ("*" if u.in_use else ""),
            "CacheType": "regular", "Size": fmt.human_size(r.size),
            "CreatedSince": fmt.since(r.created_ns / 1e9, now),
            "LastUsedSince": fmt.since(r.last_used_ns / 1e9, now) if r.last_used_ns else "",
            "UsageCount": "N/A" if r.use_count is None else str(r.use_count),
            "Shared": "true" if u.shared else "false"})
    volumes = [{"Name": v.name, "Links": str(len(snap.volume_users.get(v.name, ()))),
                "Size": fmt.human_size(v.size) if v.local else "N/A"} for v in snap.volumes]
    return {"Images": images, "Containers": containers, "Volumes": volumes, "BuildCache": cache}


def df(args: list[str], path: str) -> int:
    from berth.cli import format as fmt
    from berth.engine import system as sysmod
    cmd = Command(path, "[OPTIONS]", "Show berth disk usage", [
        Flag("format", value="string", help="Format output using a custom template: 'table', "
             "'table TEMPLATE', 'json', 'TEMPLATE'"),
        Flag("verbose", "v", help="Show detailed information on space usage"),
    ], max_args=0)
    opts, _ = cmd.parse(args)
    eng = _engine()
    snap = sysmod.load_snapshot(eng.db, eng.root, leftovers=True)
    du = sysmod.disk_usage(snap)
    form = opts["format"]
    table = not form or form.startswith("table")
    if not opts["verbose"]:
        main = [_usage_row(u) for u in du.rows]
        extra = [_usage_row(u) for u in du.extra]
        if table:
            text = fmt.render(main, form, default_table=_DF_TABLE, headers=_DF_HEADERS)
            text += "\n" + fmt.render(extra, form, default_table=_DF_TABLE, headers=_DF_HEADERS)
        else:
            text = fmt.render(main + extra, form, default_table=_DF_TABLE, headers=_DF_HEADERS)
        sys.stdout.write(text)
        return 0
    rows = _verbose_rows(du, snap, trunc=table)
    if not table:  # one execution over {Images, Containers, Volumes, BuildCache}
        body = "{{json .}}" if form == "json" else form.replace("\\t", "\t").replace("\\n", "\n")
        data = fmt.GoMap({k: [fmt.Row(r) for r in v] for k, v in rows.items()})
        sys.stdout.write(fmt.Template(body).execute(data) + ("\n" if form == "json" else ""))
        return 0
    out = ["Images space usage:\n\n",
           fmt.render(rows["Images"], None, default_table=_IMAGE_TABLE, headers=_HEADERS),
           "\nContainers space usage:\n\n",
           fmt.render(rows["Containers"], None, default_table=_CONTAINER_TABLE,
                      headers=_C_HEADERS),
           "\nLocal Volumes space usage:\n\n",
           fmt.render(rows["Volumes"], None, default_table=_VOLUME_TABLE, headers=_V_HEADERS),
           f"\nBuild cache usage: {_size(du.rows[3].size)}\n\n",
           fmt.render(rows["BuildCache"], None, default_table=_CACHE_TABLE, headers=_B_HEADERS)]
    logs, archives, leftovers = du.extra
    out.append(f"\nContainer logs: {_size(logs.size)}, layer archives: {_size(archives.size)}, "
               f"leftovers: {_size(leftovers.size)}\n")
    if snap.leftovers:
        out.append("\nLeftovers (files no record explains):\n\n")
        out.append(fmt.render([{"Path": p, "Size": _size(s)} for p, s in snap.leftovers], None,
                              default_table="table {{.Path}}\t{{.Size}}",
                              headers={"Path": "PATH", "Size": "SIZE"}))
    sys.stdout.write("".join(out))
    return 0
