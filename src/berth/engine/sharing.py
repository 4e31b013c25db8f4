"""Namespaces a container shares with another: docker's `--network container:NAME` and
`--pid container:NAME`.

    parse_mode(text, flag, allowed, joinable)
                                      a --pid/--ipc/--uts value, checked: "", host, none…,
                                      container:REF where `joinable`
    join(db, root, cid, owners)       before each start: config.json joins each owner's
                                      namespace as its process runs now; the owner must be
                                      running

The owner is recorded by id at create; its process (and so its namespaces) may change at each
of its restarts, so the paths are written at every start of the sharer, never at create.

`--ipc container:NAME` is refused: docker shares the other container's /dev/shm with its IPC
namespace, which needs that /dev/shm mounted on the host's side (docker's `--ipc
shareable`), and berth mounts every /dev/shm inside the container's own mount namespace,
where no other mount namespace may bind it from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

from berth.errors import Conflict, InvalidArgument, NotFound
from berth.store.db import Database

__all__ = ["parse_mode", "join"]

_NS_FILE = {"network": "net", "pid": "pid"}


def parse_mode(text: str, flag: str, allowed: Sequence[str],
               joinable: bool = True) -> tuple[str, str]:
    """(mode, owner reference): mode is "" (a namespace of its own), one of `allowed` (host,
    none, private…) or "container" with the reference of the other container."""
    if text.startswith("container:") and not joinable and flag == "--ipc":
        raise InvalidArgument("--ipc container:NAME is not supported by berth: it would "
                              "share the other container's /dev/shm, which berth does not "
                              "mount where another container can join it")
    if text.startswith("container:") and joinable:
        ref = text[len("container:"):]
        if not ref:
            raise InvalidArgument(f"invalid {flag} value {text!r}: a container name or id is "
                                  "needed after container:")
        return "container", ref
    if text in ("", *allowed):
        return text, ""
    raise InvalidArgument(f"invalid {flag} value {text!r}: expected "
                          + ", ".join([*allowed, *(["container:NAME"] if joinable else [])]))


def join(db: Database, root: str, cid: str, owners: Mapping[str, str]) -> None:
    """Before a start of `cid`: for each namespace type ("network", "pid") the id of the
    container whose namespace it joins; the paths go into its config.json."""
    if not owners:
        return
    path = os.path.join(root, "containers", cid, "config.json")
    with open(path) as f:
        spec = json.load(f)
    for kind, owner in owners.items():
        rows = db.read("SELECT status, pid FROM containers WHERE id = ?", (owner,))
        if not rows:
            raise NotFound(f"No such container: {owner} (the container whose {kind} "
                           f"namespace {cid[:12]} shares)")
        status, pid = rows[0]
        if status not in ("running", "restarting") or not pid:
            raise Conflict(f"cannot join {kind} namespace of a non running container: "
                           f"{owner}")
        for ns in spec["linux"]["namespaces"]:
            if ns["type"] == kind:
                ns["path"] = f"/proc/{pid}/ns/{_NS_FILE[kind]}"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(spec, f)
    os.replace(tmp, path)
