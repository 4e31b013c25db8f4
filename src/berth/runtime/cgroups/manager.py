"""A container's cgroup across every hierarchy of the host: create, limit, join, freeze, kill,
remove, measure. The one module here that touches /sys/fs/cgroup.

`open_cgroups(cgroups_path, container_id)` reads the host's layout and returns a `Cgroups`.
It creates the container's directory in every hierarchy (each v1 hierarchy, named ones such as
name=systemd included, and the cgroup2 mount, as runc does on hybrid hosts), and moves
processes into all of them, so that any tool looking at any hierarchy finds the container.

Raises: InvalidConfig (a resources field is wrong), ResourceLimit (the host cannot grant a
limit: controller missing, value refused), RuntimeFailure (cgroupfs failed otherwise).
"""

from __future__ import annotations

import errno
import os
import time

from berth.errors import ResourceLimit, RuntimeFailure

from . import devices as dev
from .files import perform, read_file, read_int, read_keyed, write_file
from .layout import DEFAULT_PARENT, Layout, cgroup_path, read_layout
from .plan import place, plan_writes
from .resources import parse_resources
from .v1 import HostV1
from .v2 import HostV2

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    from .files import Write
    from .resources import Resources

    class CgroupManager(Protocol):
        path: str

        def create(self) -> None: ...
        def apply(self, resources: dict[str, Any]) -> None: ...
        def add_pid(self, pid: int) -> None: ...
        def join_self(self) -> None: ...
        @property
        def unified_path(self) -> str | None: ...
        def pids(self) -> list[int]: ...
        def freeze(self) -> None: ...
        def thaw(self) -> None: ...
        def frozen(self) -> bool: ...
        def kill_all(self, sig: int) -> None: ...
        def destroy(self) -> None: ...
        def stats(self) -> dict[str, Any]: ...

SIGKILL = 9
# memory.limit_in_bytes reads back as this (page-rounded LONG_MAX) when unlimited.
_V1_UNLIMITED = 2**62


def _exists(path: str) -> bool:
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class Cgroups:
    """The CgroupManager of one container over the hierarchies of a Layout."""

    def __init__(self, path: str, layout: Layout) -> None:
        self.path = path
        self.layout = layout
        self._mounts = tuple(layout.hierarchies())

    # -- where things are ------------------------------------------------------------------

    def directory(self, controller: str) -> str | None:
        """The container's directory for `controller` (v1 name), or None if the host has no
        hierarchy for it."""
        where = self.layout.where(controller)
        if where == 1:
            return self.layout.v1[controller] + self.path
        if where == 2:
            return f"{self.layout.unified}{self.path}"
        return None

    def _write_dir(self, w: Write) -> str:
        if w.version == 2:
            return f"{self.layout.unified}{self.path}"
        return self.layout.v1[w.controller] + self.path

    def _primary(self) -> str | None:
        """The hierarchy whose membership is the container's: the v1 freezer (freeze and the
        signal fallback act on it), else cgroup2, else any."""
        if "freezer" in self.layout.v1:
            return self.layout.v1["freezer"] + self.path
        if self.layout.unified is not None:
            return f"{self.layout.unified}{self.path}"
        return self._mounts[0] + self.path if self._mounts else None

    # -- create ----------------------------------------------------------------------------

    def create(self) -> None:
        if not self._mounts:
            raise ResourceLimit("no cgroup hierarchy is mounted on this host")
        cpuset = self.layout.v1.get("cpuset")
        for attempt in range(5):
            try:
                for mnt in self._mounts:
                    if mnt == cpuset:
                        self._create_cpuset(mnt)
                    else:
                        os.makedirs(mnt + self.path, 0o755, exist_ok=True)
                break
            except FileNotFoundError:
                # Another container's destroy removed the shared /berth parent between our
                # check and our mkdir (see destroy): make it again.
                if attempt == 4:
                    raise RuntimeFailure(f"cgroup {self.path}: its parent keeps vanishing") from None
            except OSError as e:
                raise RuntimeFailure(f"cgroup {self.path}: cannot create {e.filename}: "
                                     f"{os.strerror(e.errno or 0)}") from e
        if self.layout.mode == "v2":
            # Pure v2: offer every controller to the container, as runc does, so that its
            # limits can be set and its statistics read.
            self._enable_v2(self.layout.v2_controllers)

    def _create_cpuset(self, mnt: str) -> None:
        """A v1 cpuset cgroup starts with empty cpus and mems, and no process can join it
        until both are set: copy them from the parent at every level created."""
        prefix = "cpuset." if _exists(f"{mnt}/cpuset.cpus") else ""
        parent = mnt
        for part in self.path.strip("/").split("/"):
            current = f"{parent}/{part}"
            try:
                os.mkdir(current, 0o755)
            except FileExistsError:
                pass
            for name in ("cpus", "mems"):
                mine = f"{current}/{prefix}{name}"
                if not read_file(mine).strip():
                    write_file(mine, read_file(f"{parent}/{prefix}{name}").strip() or "\n")
            parent = current

    def _enable_v2(self, controllers: frozenset[str] | set[str]) -> None:
        """Enable `controllers` in cgroup.subtree_control of every ancestor of the container's
        cgroup2 directory, top down. Best effort: a parent holding processes refuses domain
        controllers; the write of a limit then reports the missing file."""
        wanted = {c for c in controllers if c in self.layout.v2_controllers}
        if not wanted or self.layout.unified is None:
            return
        parts = self.path.strip("/").split("/")
        for i in range(len(parts)):        # the root, then each ancestor below it
            self._enable_in("/".join([self.layout.unified, *parts[:i]]), wanted)

    @staticmethod
    def _enable_in(directory: str, wanted: set[str]) -> None:
        control = f"{directory}/cgroup.subtree_control"
        try:
            missing = wanted - set(read_file(control).split())
            if not missing:
                return
            write_file(control, " ".join(f"+{c}" for c in sorted(missing)))
        except OSError:
            for c in sorted(wanted):
                try:
                    write_file(control, f"+{c}")
                except OSError:
                    pass

    # -- apply -----------------------------------------------------------------------------

    def apply(self, resources: dict[str, Any]) -> None:
        """Validate linux.resources, then write it. The runtime's default device rules are
        applied after the config's (so pass the whole resources object on updates too)."""
        res = parse_resources(resources)
        placement = place(res, self.layout)
        v2_controllers = set(placement.v2)
        v2_controllers.update(k.partition(".")[0] for k, _ in res.unified)
        self._enable_v2(v2_controllers)
        writes = plan_writes(res, self.layout, self._probe_v1(res, placement.v1),
                             self._probe_v2(res, placement.v2), placement)
        perform(writes, self._write_dir, self._explain)

    def _probe_v1(self, res: Resources, controllers: frozenset[str]) -> HostV1:
        memsw, memory_limit = True, None
        if "memory" in controllers and res.memory is not None:
            d = self.layout.v1["memory"] + self.path
            memsw = _exists(f"{d}/memory.memsw.limit_in_bytes")
            if res.memory.limit and res.memory.swap and memsw:
                memory_limit = self._read_int_or_none(f"{d}/memory.limit_in_bytes")
        weight_file = weight_device_file = None
        if "blkio" in controllers:
            d = self.layout.v1["blkio"] + self.path
            weight_file = next((f for f in ("blkio.bfq.weight", "blkio.weight")
                                if _exists(f"{d}/{f}")), None)
            weight_device_file = next((f for f in ("blkio.bfq.weight_device",
                                                   "blkio.weight_device")
                                       if _exists(f"{d}/{f}")), None)
        prefix = "cpuset."
        if "cpuset" in controllers and not _exists(
                f"{self.layout.v1['cpuset']}{self.path}/cpuset.cpus"):
            prefix = ""
        current = None
        if "devices" in controllers:
            try:
                current = dev.parse_list(read_file(
                    f"{self.layout.v1['devices']}{self.path}/devices.list"))
            except OSError as e:
                raise RuntimeFailure(f"cgroup {self.path}: cannot read devices.list (was it "
                                     f"created?): {os.strerror(e.errno or 0)}") from e
        return HostV1(memsw, memory_limit, weight_file, weight_device_file, prefix, current)

    def _probe_v2(self, res: Resources, controllers: frozenset[str]) -> HostV2:
        if not controllers:
            return HostV2()
        d = f"{self.layout.unified}{self.path}"
        swap = "memory" not in controllers or _exists(f"{d}/memory.swap.max")
        weight: str | None = "io.weight"
        if "io" in controllers:
            weight = next((f for f in ("io.bfq.weight", "io.weight") if _exists(f"{d}/{f}")),
                          None)
        return HostV2(swap, weight)

    @staticmethod
    def _read_int_or_none(path: str) -> int | None:
        try:
            return read_int(path)
        except (OSError, ValueError):
            return None

    def _explain(self, w: Write, e: OSError) -> str:
        """Extra context for a refused write, where the kernel's errno says little."""
        if e.errno == errno.EBUSY and w.file in ("memory.limit_in_bytes", "memory.max"):
            d = self._write_dir(w)
            usage = self._read_int_or_none(
                f"{d}/memory.usage_in_bytes" if w.version == 1 else f"{d}/memory.current")
            return f" (the cgroup already uses {usage} bytes)"
        if e.errno == errno.ENOENT:
            return " (this kernel or cgroup has no such file)"
        return ""

    # -- processes -------------------------------------------------------------------------

    def add_pid(self, pid: int) -> None:
        for mnt in self._mounts:
            procs = f"{mnt}{self.path}/cgroup.procs"
            try:
                write_file(procs, str(pid))
            except OSError as e:
                why = ("the process is gone" if e.errno == errno.ESRCH
                       else os.strerror(e.errno or 0))
                raise RuntimeFailure(f"cannot move process {pid} into {procs}: {why}") from e

    @property
    def unified_path(self) -> str | None:
        """The container's cgroup2 directory: open it for clone3(CLONE_INTO_CGROUP)."""
        return None if self.layout.unified is None else f"{self.layout.unified}{self.path}"

    def join_self(self) -> None:
        """Move the calling process into every hierarchy: the cheap way to join, for the
        container's init before it execs (and before it enters a user namespace, which
        would lose the right to write host cgroup files).

        Writing a pid to cgroup.procs takes the kernel's global threadgroup lock, whose
        write side waits for an RCU grace period: 5-30 ms here, per add_pid. A
        single-threaded process writing "0" to a v1 `tasks` file moves itself without that
        lock. cgroup2 has no such path: it is skipped when the process is already there
        (started with CLONE_INTO_CGROUP), else written to cgroup.procs (one grace period).
        """
        single = "\nThreads:\t1\n" in read_file("/proc/self/status")
        for mnt in self._mounts:
            unified = mnt == self.layout.unified
            if unified and f"\n0::{self.path}\n" in "\n" + read_file("/proc/self/cgroup"):
                continue
            name = "tasks" if single and not unified else "cgroup.procs"
            target = f"{mnt}{self.path}/{name}"
            try:
                write_file(target, "0")
            except OSError as e:
                raise RuntimeFailure(f"cannot join {target}: {os.strerror(e.errno or 0)}") from e

    def pids(self) -> list[int]:
        top = self._primary()
        out: list[int] = []
        if top is None:
            return out
        stack = [top]
        while stack:
            d = stack.pop()
            try:
                out.extend(int(x) for x in read_file(f"{d}/cgroup.procs").split())
                with os.scandir(d) as it:
                    stack.extend(e.path for e in it if e.is_dir(follow_symlinks=False))
            except FileNotFoundError:
                continue
        return out

    # -- freezer ---------------------------------------------------------------------------

    def freeze(self) -> None:
        where = self.layout.where("freezer")
        if where == 1:
            self._freeze_v1(self.layout.v1["freezer"] + self.path)
        elif where == 2:
            self._freeze_v2(f"{self.layout.unified}{self.path}")
        else:
            raise ResourceLimit("this host has no cgroup freezer")

    def _freeze_v1(self, d: str) -> None:
        # v1 can stay FREEZING while tasks fork or are busy in the kernel: ask again, with an
        # occasional thaw and pause to let stragglers through (as runc does).
        state = f"{d}/freezer.state"
        try:
            for i in range(1000):
                if i % 50 == 49:
                    write_file(state, "THAWED")
                    time.sleep(0.01)
                write_file(state, "FROZEN")
                if read_file(state).strip() == "FROZEN":
                    return
                time.sleep(0.0001 if i < 10 else 0.001)
        except OSError as e:
            raise RuntimeFailure(f"cannot freeze {d}: {os.strerror(e.errno or 0)}") from e
        write_file(state, "THAWED")
        raise RuntimeFailure(f"cannot freeze {d}: it stays FREEZING")

    def _freeze_v2(self, d: str) -> None:
        try:
            write_file(f"{d}/cgroup.freeze", "1")
            delay = 0.0001
            deadline = time.monotonic() + 2.0
            while read_keyed(f"{d}/cgroup.events").get("frozen") != 1:
                if time.monotonic() > deadline:
                    write_file(f"{d}/cgroup.freeze", "0")
                    raise RuntimeFailure(f"cannot freeze {d}: not frozen after 2 s")
                time.sleep(delay)
                delay = min(delay * 2, 0.02)
        except OSError as e:
            raise RuntimeFailure(f"cannot freeze {d}: {os.strerror(e.errno or 0)}") from e

    def thaw(self) -> None:
        where = self.layout.where("freezer")
        try:
            if where == 1:
                write_file(f"{self.layout.v1['freezer']}{self.path}/freezer.state", "THAWED")
            elif where == 2:
                write_file(f"{self.layout.unified}{self.path}/cgroup.freeze", "0")
        except OSError as e:
            raise RuntimeFailure(f"cannot thaw cgroup {self.path}: "
                                 f"{os.strerror(e.errno or 0)}") from e

    def frozen(self) -> bool:
        where = self.layout.where("freezer")
        try:
            if where == 1:
                return read_file(f"{self.layout.v1['freezer']}{self.path}/freezer.state"
                                 ).strip() == "FROZEN"
            if where == 2:
                return read_file(f"{self.layout.unified}{self.path}/cgroup.freeze").strip() == "1"
        except FileNotFoundError:
            pass
        return False

    # -- kill ------------------------------------------------------------------------------

    def kill_all(self, sig: int) -> None:
        """Send `sig` to every process of the cgroup. SIGKILL goes through cgroup.kill when
        the cgroup2 hierarchy has it (no race with forks); otherwise the cgroup is frozen,
        each process signalled, and thawed (left frozen if it was, except for SIGKILL: a
        frozen process would not die)."""
        primary = self._primary()
        if primary is None or not os.path.isdir(primary):
            return                    # never created, or already removed: nothing to signal
        freezer = self.layout.where("freezer")
        if sig == SIGKILL and self.layout.unified is not None:
            try:
                write_file(f"{self.layout.unified}{self.path}/cgroup.kill", "1")
            except FileNotFoundError:
                pass      # no cgroup.kill (kernel < 5.14) or no directory: fall back
            else:
                if freezer == 1 and self.frozen():
                    self.thaw()       # v1-frozen tasks only die once thawed
                return
        was_frozen = self.frozen()
        if freezer:
            if not was_frozen:
                self.freeze()
            try:
                self._signal(self.pids(), sig)
            finally:
                if not was_frozen or sig == SIGKILL:
                    self.thaw()
            return
        # No freezer: signal until no new process shows up.
        seen: set[int] = set()
        for _ in range(10):
            new = [p for p in self.pids() if p not in seen]
            if not new:
                return
            self._signal(new, sig)
            seen.update(new)

    @staticmethod
    def _signal(pids: list[int], sig: int) -> None:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    # -- destroy ---------------------------------------------------------------------------

    def destroy(self) -> None:
        """Remove the container's directory (and any sub-cgroup) from every hierarchy. Kills
        nothing: waits up to half a second for exiting processes to leave, then gives up
        with RuntimeFailure naming those still there. Missing directories are fine."""
        delay, waited = 0.0005, 0.0
        while self.pids() and waited < 0.5:
            time.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.05)
        failed = []
        for mnt in self._mounts:
            try:
                _remove_tree(mnt + self.path)
            except OSError as e:
                failed.append(f"{e.filename}: {os.strerror(e.errno or 0)}")
        if failed:
            left = self.pids()
            raise RuntimeFailure(f"cannot remove cgroup {self.path}"
                                 f"{f' (processes still in it: {left})' if left else ''}: "
                                 + "; ".join(failed))
        parent = os.path.dirname(self.path)
        if parent == DEFAULT_PARENT:
            # The shared parent of berth's default paths goes with its last container, so
            # that berth leaves nothing in the host's tree (a busy parent stays: rmdir of a
            # cgroup with children fails, and create retries if it loses a race with us).
            for mnt in self._mounts:
                try:
                    os.rmdir(mnt + parent)
                except OSError:
                    pass

    # -- stats -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """{"memory": {usage, max_usage, limit, failcnt, swap_failcnt, oom_kill}, "cpu": {usage_ns,
        nr_periods, nr_throttled, throttled_ns}, "pids": {current, limit}}; a limit of None
        means unlimited; a section is missing when the host has no way to measure it."""
        out: dict[str, Any] = {}
        try:
            mem = self._memory_stats()
            if mem is not None:
                out["memory"] = mem
            out["cpu"] = self._cpu_stats()
            out["pids"] = self._pids_stats()
        except OSError as e:
            raise RuntimeFailure(f"cannot read statistics of cgroup {self.path}: "
                                 f"{os.strerror(e.errno or 0)}") from e
        return {k: v for k, v in out.items() if v is not None}

    def _memory_stats(self) -> dict[str, Any] | None:
        where, d = self.layout.where("memory"), self.directory("memory")
        if where == 1:
            limit = read_int(f"{d}/memory.limit_in_bytes")
            memsw = f"{d}/memory.memsw.failcnt"
            return {"usage": read_int(f"{d}/memory.usage_in_bytes"),
                    "max_usage": read_int(f"{d}/memory.max_usage_in_bytes"),
                    "limit": None if limit >= _V1_UNLIMITED else limit,
                    "failcnt": read_int(f"{d}/memory.failcnt"),
                    # The kernel charges memory+swap first: with memsw == memory, the hits
                    # are counted here and memory.failcnt stays 0.
                    "swap_failcnt": read_int(memsw) if _exists(memsw) else 0,
                    "oom_kill": read_keyed(f"{d}/memory.oom_control").get("oom_kill", 0)}
        if where == 2 and _exists(f"{d}/memory.current"):
            raw = read_file(f"{d}/memory.max").strip()
            events = read_keyed(f"{d}/memory.events")
            peak = f"{d}/memory.peak"
            return {"usage": read_int(f"{d}/memory.current"),
                    "max_usage": read_int(peak) if _exists(peak) else None,
                    "limit": None if raw == "max" else int(raw),
                    "failcnt": events.get("max", 0),
                    "swap_failcnt": read_keyed(f"{d}/memory.swap.events").get("max", 0)
                    if _exists(f"{d}/memory.swap.events") else 0,
                    "oom_kill": events.get("oom_kill", 0)}
        return None

    def _cpu_stats(self) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        if self.layout.where("cpuacct") == 1:
            out["usage_ns"] = read_int(f"{self.directory('cpuacct')}/cpuacct.usage")
        elif self.layout.unified is not None:
            # cpu.stat's usage is a core cgroup2 file: there even without the cpu controller.
            stat = read_keyed(f"{self.layout.unified}{self.path}/cpu.stat")
            out["usage_ns"] = stat.get("usage_usec", 0) * 1000
        where, d = self.layout.where("cpu"), self.directory("cpu")
        if where == 1:
            stat = read_keyed(f"{d}/cpu.stat")
            out.update(nr_periods=stat.get("nr_periods", 0),
                       nr_throttled=stat.get("nr_throttled", 0),
                       throttled_ns=stat.get("throttled_time", 0))
        elif where == 2:
            stat = read_keyed(f"{d}/cpu.stat")
            if "nr_periods" in stat:
                out.update(nr_periods=stat["nr_periods"], nr_throttled=stat["nr_throttled"],
                           throttled_ns=stat.get("throttled_usec", 0) * 1000)
        return out or None

    def _pids_stats(self) -> dict[str, Any]:
        d = self.directory("pids")
        if d is not None and _exists(f"{d}/pids.current"):
            raw = read_file(f"{d}/pids.max").strip()
            return {"current": read_int(f"{d}/pids.current"),
                    "limit": None if raw == "max" else int(raw)}
        return {"current": len(self.pids()), "limit": None}


def _remove_tree(d: str) -> None:
    """rmdir `d` after its sub-cgroups, retrying EBUSY briefly (a process that has just
    exited may still be counted for a moment)."""
    delays = iter((0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05))
    while True:
        try:
            os.rmdir(d)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                raise
            try:
                with os.scandir(d) as it:
                    subdirs = [x.path for x in it if x.is_dir(follow_symlinks=False)]
            except FileNotFoundError:
                return
            for sub in subdirs:
                _remove_tree(sub)       # removes it or raises: each pass makes progress
            if subdirs:
                continue
            delay = next(delays, None)
            if delay is None:
                raise
            time.sleep(delay)


def open_cgroups(cgroups_path: str | None, container_id: str, *,
                 layout: Layout | None = None) -> Cgroups:
    """The manager for a container's cgroup. cgroups_path is linux.cgroupsPath: absolute or
    relative, it is taken from each hierarchy's root; None gives /berth/<container_id>.
    `layout` overrides the host's (tests use Layout.only_unified())."""
    return Cgroups(cgroup_path(cgroups_path, container_id),
                   layout if layout is not None else read_layout())


if not TYPE_CHECKING:
    # At run time the protocol is the one implementation (typing costs milliseconds).
    CgroupManager = Cgroups
