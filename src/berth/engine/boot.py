"""What docker's daemon does when it starts, for an engine without a daemon: the first berth
command after the machine booted does it, once.

A boot is noticed by the machine's boot id (/proc/sys/kernel/random/boot_id) differing from the
one kept in `$BERTH_RUN/boot-id-<root>` (BERTH_RUN is a tmpfs, /run/berth: after a reboot the file is
gone). Then, under a lock so that two commands do it once:

  - containers recorded as running, restarting or paused lost their processes, monitors,
    mounts and cgroups with the machine: they are recorded as exited with code 255 (docker's
    "Exited (255)" after a reboot);
  - those whose restart policy is `always`, or `unless-stopped` and not stopped by the user,
    are started again, as docker's daemon restarts them.
"""

from __future__ import annotations

import fcntl
import os
import time
from typing import Any

__all__ = ["after_boot", "boot_id"]

BOOT_ID = "/proc/sys/kernel/random/boot_id"


def boot_id() -> str:
    try:
        with open(BOOT_ID) as f:
            return f.read().strip()
    except OSError:
        return ""


def after_boot(engine: Any) -> list[str]:
    """Once per boot (see the module): returns the ids of the containers started again."""
    import hashlib
    run = str(engine.run)
    # one mark per store: a BERTH_RUN shared by several roots restores each of them
    mark = os.path.join(run, "boot-id-" + hashlib.sha256(
        os.path.realpath(str(engine.root)).encode()).hexdigest()[:16])
    now = boot_id()
    try:
        with open(mark) as f:
            if f.read().strip() == now:
                return []
    except OSError:
        pass
    os.makedirs(run, exist_ok=True)
    fd = os.open(os.path.join(run, "boot.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            with open(mark) as f:
                if f.read().strip() == now:
                    return []  # another command did it while we waited
        except OSError:
            pass
        again = _restore(engine)
        tmp = mark + ".tmp"
        with open(tmp, "w") as f:
            f.write(now + "\n")
        os.rename(tmp, mark)
    finally:
        os.close(fd)
    started = []
    for cid in again:
        try:
            engine.start(cid)
            started.append(cid)
        except Exception:  # noqa: BLE001 - one container that cannot start stops no other
            continue
    return started


def _restore(engine: Any) -> list[str]:
    """Record the containers the boot killed as exited (255); the ids to start again."""
    import json
    rows = engine.db.read("SELECT id, name, config, stopped_by_user FROM containers WHERE "
                          "status IN ('running', 'restarting', 'paused')")
    again = []
    with engine.db.transaction() as tx:
        for cid, name, config, stopped in rows:
            tx.execute("UPDATE containers SET status = 'exited', exit_code = 255, pid = 0, "
                       "monitor_pid = 0, finished_ns = ? WHERE id = ?", (time.time_ns(), cid))
            engine.db.record_event("container", "die", cid, {"name": name, "exitCode": "255"})
            policy = (json.loads(config or "{}").get("restart") or {}).get("name", "no")
            if policy == "always" or (policy == "unless-stopped" and not stopped):
                again.append(cid)
    return again
