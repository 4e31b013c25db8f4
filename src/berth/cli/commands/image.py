"""`berth image …` and its top-level aliases (images, rmi, tag, history, import, save, load).

Output follows the docker CLI: its tables, `--format` templates, `-q`, and "Untagged:"/"Deleted:"
records. Errors print "Error: …" on stderr and exit 1, as docker's CLI (125 is for a flag that
does not parse); `rmi` and `image inspect` of several names go on past a failure
(common.for_each) and exit 1 at the end.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from typing import Any

from berth.cli.args import Command, Flag
from berth.errors import InvalidArgument

from .common import for_each

SUBCOMMANDS = {
    "build": "Build an image from a Dockerfile",
    "ls": "List images",
    "inspect": "Display detailed information on one or more images",
    "tag": "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
    "rm": "Remove one or more images",
    "history": "Show the history of an image",
    "import": "Import the contents from a tarball to create a filesystem image",
    "save": "Save one or more images to a tar archive (streamed to STDOUT by default)",
    "load": "Load an image from a tar archive or STDIN",
    "prune": "Remove unused images",
}
ALIASES = {"list": "ls", "remove": "rm", "rmi": "rm", "images": "ls"}


def _store() -> Any:
    from berth.engine.context import image_store
    return image_store()


def run(args: list[str]) -> int:
    """`berth image SUBCOMMAND`."""
    from berth.cli.main import run_group
    return run_group("image", "Manage images", SUBCOMMANDS, ALIASES, args, dispatch)


def dispatch(name: str, args: list[str], path: str) -> int:
    from berth.cli.main import guarded
    if name == "build":
        from .build import main
        return main(args, path)
    if name == "prune":  # with the other prunes (cli/commands/prune.py)
        from .prune import image_prune
        return guarded(lambda: image_prune(args, path))
    return guarded(lambda: _HANDLERS[name](args, path))


# --- ls ----------------------------------------------------------------------------------------

_LS_FILTERS = {"dangling", "label", "reference", "before", "since"}
_LS_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Digest": "DIGEST",
               "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
               "Containers": "CONTAINERS", "SharedSize": "SHARED SIZE",
               "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE"}


def _created_ts(created: str) -> float:
    from berth.cli.format import parse_rfc3339
    return parse_rfc3339(created) if created else 0.0


def _label_match(labels: dict[str, str], want: list[str]) -> bool:
    for w in want:
        key, eq, value = w.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def _ls(args: list[str], path: str) -> int:
    from berth.cli import format as fmt
    cmd = Command(path, "[OPTIONS] [REPOSITORY[:TAG]]", "List images", [
        Flag("all", "a", help="Show all images (default hides intermediate images)"),
        Flag("digests", help="Show digests"),
        Flag("filter", "f", "filter", repeat=True, help="Filter output based on conditions "
             "provided"),
        Flag("format", value="string", help="Format output using a custom template"),
        Flag("no-trunc", help="Don't truncate output"),
        Flag("quiet", "q", help="Only show image IDs"),
    ], max_args=1, aliases=("berth image ls", "berth image list", "berth images"))
    opts, rest = cmd.parse(args)
    filters = fmt.parse_filters(opts["filter"], _LS_FILTERS)
    store = _store()
    images = store.list(all=opts["all"] or bool(filters.get("dangling")))
    if rest:
        filters.setdefault("reference", []).append(rest[0])
    images = _filter_images(store, images, filters)
    images.sort(key=lambda i: (_created_ts(i.created), i.added_ns), reverse=True)
    rows = []
    for img in images:
        full_id = img.id
        shown_id = full_id if opts["no_trunc"] else img.short_id
        ts = _created_ts(img.created)
        base = {"ID": shown_id, "CreatedSince": fmt.since(ts) if ts else "N/A",
                "CreatedAt": fmt.created_at(ts) if ts else "N/A",
                "Size": fmt.human_size(img.size), "VirtualSize": fmt.human_size(img.size),
                "SharedSize": "N/A", "UniqueSize": "N/A", "Containers": "N/A"}
        names = [n.rpartition(":") for n in img.repo_tags] or [("<none>", ":", "<none>")]
        digests = {d.partition("@")[0]: d.partition("@")[2] for d in img.repo_digests}
        for repo, _, tag in names:
            rows.append({"Repository": repo, "Tag": tag,
                         "Digest": digests.get(repo, "<none>"), **base})
    if opts["quiet"]:
        seen: list[str] = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
        sys.stdout.write("".join(f"{i}\n" for i in seen))
        return 0
    cols = ["Repository", "Tag", *(["Digest"] if opts["digests"] else []), "ID",
            "CreatedSince", "Size"]
    default = "table " + "\t".join("{{." + c + "}}" for c in cols)
    sys.stdout.write(fmt.render(rows, opts["format"], default_table=default,
                                headers=_LS_HEADERS))
    return 0


def _filter_images(store: Any, images: list[Any], filters: dict[str, list[str]]) -> list[Any]:
    out = images
    for value in filters.get("dangling", []):
        if value.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={value}'")
        want = value.lower() in ("true", "1")
        out = [i for i in out if i.dangling == want]
    if "label" in filters:
        out = [i for i in out if _label_match(i.config.config.labels or {}, filters["label"])]
    if "reference" in filters:
        pats = filters["reference"]

        def ref_ok(img: Any) -> bool:
            for name in img.repo_tags:
                repo = name.rpartition(":")[0]
                if any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(repo, p)
                       for p in pats):
                    return True
            return False
        out = [i for i in out if ref_ok(i)]
    for key, cmp in (("before", lambda a, b: a < b), ("since", lambda a, b: a > b)):
        for value in filters.get(key, []):
            pivot = _created_ts(store.get(value).created)
            out = [i for i in out if cmp(_created_ts(i.created), pivot)]
    return out


# --- inspect -----------------------------------------------------------------------------------

def _inspect(args: list[str], path: str) -> int:
    from .common import emit_inspect
    cmd = Command(path, "[OPTIONS] IMAGE [IMAGE...]", SUBCOMMANDS["inspect"], [
        Flag("format", "f", "string", help="Format output using a custom template"),
    ], min_args=1)
    opts, names = cmd.parse(args)
    return emit_inspect(names, _store().inspect, opts["format"])


# --- tag, rm -----------------------------------------------------------------------------------

def _tag(args: list[str], path: str) -> int:
    cmd = Command(path, "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]", SUBCOMMANDS["tag"],
                  min_args=2, max_args=2)
    _, (src, dst) = cmd.parse(args)
    _store().tag(src, dst)
    return 0


def _rm(args: list[str], path: str) -> int:
    cmd = Command(path, "[OPTIONS] IMAGE [IMAGE...]", SUBCOMMANDS["rm"], [
        Flag("force", "f", help="Force removal of the image"),
        Flag("no-prune", help="Do not delete untagged parents"),
    ], min_args=1, aliases=("berth image rm", "berth image remove", "berth rmi"))
    opts, names = cmd.parse(args)
    store = _store()
    return for_each(names, lambda n: [f"{what}: {ident}"
                                      for what, ident in store.remove(n, force=opts["force"])])


# --- history -----------------------------------------------------------------------------------

_HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                    "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}


def _history(args: list[str], path: str) -> int:
    from berth.cli import format as fmt
    cmd = Command(path, "[OPTIONS] IMAGE", SUBCOMMANDS["history"], [
        Flag("format", value="string", help="Format output using a custom template"),
        Flag("human", "H", default=True, help="Print sizes and dates in human readable format "
             "(default true)"),
        Flag("no-trunc", help="Don't truncate output"),
        Flag("quiet", "q", help="Only show image IDs"),
    ], min_args=1, max_args=1)
    opts, (name,) = cmd.parse(args)
    store = _store()
    rows = []
    for h in store.history(name):
        ident = h.id if (opts["no_trunc"] or h.id == "<missing>") else \
            h.id.removeprefix("sha256:")[:12]
        ts = _created_ts(h.created)
        created_by = h.created_by.replace("\t", " ")
        if not opts["no_trunc"]:
            created_by = fmt.ellipsis(created_by, 45)
        if opts["human"]:
            since = fmt.since(ts) if ts else "N/A"
            size = fmt.human_size(h.size)
        else:
            since = fmt.rfc3339(ts) if ts else "N/A"
            size = str(h.size)
        rows.append({"ID": ident, "CreatedSince": since,
                     "CreatedAt": fmt.rfc3339(ts) if ts else "N/A",
                     "CreatedBy": created_by, "Size": size, "Comment": h.comment})
    if opts["quiet"]:
        sys.stdout.write("".join(r["ID"] + "\n" for r in rows))
        return 0
    default = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
    sys.stdout.write(fmt.render(rows, opts["format"], default_table=default,
                                headers=_HISTORY_HEADERS))
    return 0


# --- import, save, load ------------------------------------------------------------------------

def _import(args: list[str], path: str) -> int:
    from berth.image import archive
    cmd = Command(path, "[OPTIONS] file|URL|- [REPOSITORY[:TAG]]", SUBCOMMANDS["import"], [
        Flag("change", "c", "list", repeat=True, help="Apply Dockerfile instruction to the "
             "created image"),
        Flag("message", "m", "string", help="Set commit message for imported image"),
        Flag("platform", value="string", help="Set platform if server is multi-platform "
             "capable"),
    ], min_args=1, max_args=2)
    opts, rest = cmd.parse(args)
    src = rest[0]
    if opts["platform"] and opts["platform"] not in ("linux", f"linux/{_arch()}"):
        raise InvalidArgument(f"import: platform {opts['platform']!r} is not this host's "
                              f"(linux/{_arch()})")
    if "://" in src:
        raise InvalidArgument(f"import: {src}: importing from a URL is not supported here "
                              "(this machine reaches no registry); download it and import "
                              "the file")
    if src == "-" and sys.stdin.isatty():
        raise InvalidArgument("import: refusing to read a tar archive from a terminal; "
                              "pipe one in or name a file")
    store = _store()
    source: Any = sys.stdin.buffer if src == "-" else src
    image_id = archive.import_rootfs(store, source, reference=rest[1] if len(rest) > 1 else None,
                                     changes=opts["change"], message=opts["message"])
    print(image_id)
    return 0


def _arch() -> str:
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def _save(args: list[str], path: str) -> int:
    from berth.image import archive
    cmd = Command(path, "[OPTIONS] IMAGE [IMAGE...]", SUBCOMMANDS["save"], [
        Flag("output", "o", "string", help="Write to a file, instead of STDOUT"),
    ], min_args=1)
    opts, names = cmd.parse(args)
    store = _store()
    if opts["output"]:
        archive.save_to_file(store, names, opts["output"])
        return 0
    if sys.stdout.isatty():
        raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or "
                              "redirect")
    sys.stdout.flush()
    with os.fdopen(os.dup(sys.stdout.fileno()), "wb") as out:
        archive.save(store, names, out)
    return 0


def _load(args: list[str], path: str) -> int:
    from berth.image import archive
    cmd = Command(path, "[OPTIONS]", SUBCOMMANDS["load"], [
        Flag("input", "i", "string", help="Read from tar archive file, instead of STDIN"),
        Flag("quiet", "q", help="Suppress the load output"),
    ], max_args=0)
    opts, _ = cmd.parse(args)
    if not opts["input"] and sys.stdin.isatty():
        raise InvalidArgument("requested load from stdin, but stdin is empty")
    store = _store()
    source: Any = opts["input"] or sys.stdin.buffer
    result = archive.load(store, source)
    if not opts["quiet"]:
        sys.stdout.write("".join(line + "\n" for line in result.lines))
    return 0


_HANDLERS = {"ls": _ls, "inspect": _inspect, "tag": _tag, "rm": _rm, "history": _history,
             "import": _import, "save": _save, "load": _load}

