"""Reading and writing cgroupfs files, and `Write`, the unit of a plan.

A plan (v1.plan, v2.plan) is a list of Write: which controller's directory, which file, which
value, and which config field asked for it. `perform` writes them in order and turns what the
kernel refuses into ResourceLimit (the value is not possible here) or RuntimeFailure (anything
else), naming the field.
"""

from __future__ import annotations

import errno
import os
from collections import namedtuple

from berth.errors import ResourceLimit, RuntimeFailure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


class Write(namedtuple("Write", "controller file value field version retry_einval",
                       defaults=("", 1, False))):
    """One file write.

    controller: the kernel controller whose directory holds the file (v1 name; "cgroup" for
    v2 core files). version: 1 or 2, the hierarchy kind. retry_einval: EINVAL is tolerated
    because a later Write in the plan repeats this one once the value it depends on is set
    (cpu period before/after quota, as the kernel checks them against each other).
    """

    __slots__ = ()
    controller: str
    file: str
    value: str
    field: str
    version: int
    retry_einval: bool


# Errors that mean "this value is not possible on this host/cgroup", not a broken runtime.
_REFUSED = {errno.EINVAL, errno.EBUSY, errno.ERANGE, errno.ENOSPC, errno.EOVERFLOW,
            errno.ENOENT, errno.ENODEV, errno.EOPNOTSUPP}


def write_file(path: str, value: str) -> None:
    """One write(2) of the whole value: cgroupfs parses each write separately."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def read_file(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks).decode()
    finally:
        os.close(fd)


def read_int(path: str) -> int:
    return int(read_file(path).strip())


def read_keyed(path: str) -> dict[str, int]:
    """A "key value" per line file (memory.stat, memory.events, cpu.stat, oom_control)."""
    out = {}
    for line in read_file(path).splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def perform(writes: Iterable[Write], directory: Callable[[Write], str],
            explain: Callable[[Write, OSError], str] | None = None) -> None:
    """Perform a plan. `directory(w)` is the cgroup directory holding w.file."""
    for w in writes:
        path = os.path.join(directory(w), w.file)
        try:
            write_file(path, w.value)
        except OSError as e:
            if w.retry_einval and e.errno == errno.EINVAL:
                continue
            detail = explain(w, e) if explain is not None else ""
            msg = (f"{w.field}: cannot write {w.value!r} to {path}: "
                   f"{os.strerror(e.errno or 0)}{detail}")
            if e.errno in _REFUSED:
                raise ResourceLimit(msg) from e
            raise RuntimeFailure(msg) from e
