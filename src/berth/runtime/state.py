"""Container status as an explicit state machine, and state.json written atomically.

State lives in `<root>/<id>/state.json` (root: --root, else $BERTH_RUN/runtime). The status is
never trusted from the file: it is derived from what the kernel says about the init process
(alive? zombie? same start time, so a recycled pid is not mistaken for ours) and from the exec
fifo (present until `start`) and the freezer.
"""

from __future__ import annotations

import os

from berth.oci import fastjson

from berth.errors import Conflict, InvalidArgument, NoSuchContainer

OCI_VERSION = "1.0.2"
_ID_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ID_CHARS = _ID_FIRST | frozenset("_.+-")


class Status(str):
    """One of the spec's statuses; the allowed transitions live here. (A str subclass with
    constants rather than an Enum: `enum` costs milliseconds on every container start.)"""

    CREATING: Status
    CREATED: Status
    RUNNING: Status
    PAUSED: Status
    STOPPED: Status
    __slots__ = ()

    def can_start(self) -> bool:
        return self == "created"

    def can_kill(self) -> bool:
        return self in ("created", "running", "paused")

    def can_delete(self) -> bool:
        return self in ("stopped", "created")

    def can_exec(self) -> bool:
        return self in ("created", "running")


for _name in ("creating", "created", "running", "paused", "stopped"):
    setattr(Status, _name.upper(), Status(_name))


def check_id(cid: str) -> str:
    if not (0 < len(cid) <= 1024 and cid[0] in _ID_FIRST and _ID_CHARS.issuperset(cid)):
        raise InvalidArgument(f"invalid container id {cid!r}: use letters, digits and _ . + -")
    return cid


def default_root() -> str:
    return os.path.join(os.environ.get("BERTH_RUN", "/run/berth"), "runtime")


class State:
    """What `create` records; everything else about a container is derived."""

    FIELDS = ("id", "pid", "pid_start", "bundle", "rootfs", "created", "cgroups_path",
              "annotations", "owner")

    def __init__(self, id: str, pid: int, pid_start: int, bundle: str, rootfs: str,
                 created: str, cgroups_path: str, annotations: dict[str, str] | None = None,
                 owner: str = "") -> None:
        self.id = id
        self.pid = pid
        self.pid_start = pid_start
        self.bundle = bundle
        self.rootfs = rootfs
        self.created = created
        self.cgroups_path = cgroups_path
        self.annotations = annotations or {}
        self.owner = owner

    def save(self, root: str) -> None:
        d = os.path.join(root, self.id)
        tmp = os.path.join(d, "state.json.tmp")
        with open(tmp, "w") as f:
            f.write(fastjson.dumps({k: getattr(self, k) for k in self.FIELDS}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(d, "state.json"))

    @classmethod
    def load(cls, root: str, cid: str) -> State:
        check_id(cid)
        try:
            with open(os.path.join(root, cid, "state.json")) as f:
                data = fastjson.loads(f.read())
        except FileNotFoundError:
            raise NoSuchContainer(cid) from None
        except ValueError as e:
            raise Conflict(f"container {cid}: state file is damaged ({e}); delete --force it") from e
        return cls(**{k: data[k] for k in cls.FIELDS if k in data})

    def fifo(self, root: str) -> str:
        return os.path.join(root, self.id, "exec.fifo")

    def status(self, root: str, frozen: bool = False) -> Status:
        if not process_alive(self.pid, self.pid_start):
            return Status.STOPPED
        if os.path.exists(self.fifo(root)):
            return Status.CREATED
        return Status.PAUSED if frozen else Status.RUNNING

    def oci(self, status: Status) -> dict[str, object]:
        """The runtime spec's state object (what `state` prints and hooks read)."""
        return {"ociVersion": OCI_VERSION, "id": self.id, "status": str(status),
                "pid": self.pid if status != Status.STOPPED else 0,
                "bundle": self.bundle, "rootfs": self.rootfs, "created": self.created,
                "owner": self.owner, "annotations": self.annotations}


def proc_start_time(pid: int) -> int | None:
    """Start time of pid (clock ticks after boot) or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def process_alive(pid: int, start: int) -> bool:
    return pid > 0 and proc_start_time(pid) == start
