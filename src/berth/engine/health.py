"""Health checks (docker's HEALTHCHECK and --health-*), run by a small process per container.

    health_config(image_healthcheck, flags) -> dict | None     what to run and how often
    next_state(state, ok, in_start_period, retries) -> state    docker's rules, pure
    run_checks(root, run, cid, cfg)                             the checker's loop

The monitor forks the checker before it becomes the bare _pump.py interpreter, only for a
container that has a health check; it dies with the monitor (PR_SET_PDEATHSIG). Each check is an
`exec` into the container (the runtime's in-process exec) with its output captured (the last
4 KiB, as docker keeps) and a timeout; the state (`starting`, `healthy`, `unhealthy`, the
failing streak and the last 5 results) is written to the container's record, and a
`health_status` event each time the status changes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from berth.errors import InvalidArgument

__all__ = ["health_config", "next_state", "run_checks"]

_NS = 1_000_000_000
DEFAULTS = {"Interval": 30 * _NS, "Timeout": 30 * _NS, "StartPeriod": 0, "Retries": 3}
_KEEP = 5
_OUTPUT = 4096


def health_config(image: Mapping[str, Any] | None, flags: Mapping[str, Any]) -> dict | None:
    """The image's Healthcheck with the `--health-*` flags over it; None when there is none or
    it is disabled (`NONE`, `--no-healthcheck`)."""
    from berth.image.changes import parse_duration
    if flags.get("no_healthcheck"):
        return None
    cfg = dict(image or {})
    if flags.get("cmd"):
        cfg["Test"] = ["CMD-SHELL", flags["cmd"]]
    for key, flag in (("Interval", "interval"), ("Timeout", "timeout"),
                      ("StartPeriod", "start_period")):
        if flags.get(flag):
            cfg[key] = parse_duration(flags[flag], f"--health-{flag.replace('_', '-')}")
    if flags.get("retries"):
        try:
            cfg["Retries"] = int(flags["retries"])
        except ValueError:
            raise InvalidArgument(f"--health-retries {flags['retries']!r}: not a number") \
                from None
    test = cfg.get("Test") or []
    if not test or test[0] == "NONE":
        return None
    if test[0] not in ("CMD", "CMD-SHELL") or len(test) < 2:
        raise InvalidArgument(f"invalid health check test: {test!r}")
    out = {k: int(cfg.get(k) or v) for k, v in DEFAULTS.items()}
    out["Test"] = list(test)
    return out


def command(test: Sequence[str]) -> list[str]:
    return ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])


def next_state(state: Mapping[str, Any], ok: bool, in_start_period: bool,
               retries: int) -> dict[str, Any]:
    """docker's rules: a success makes it healthy; failures count only after the start
    period (which a first success ends: the caller says whether it is still on), and
    `retries` of them in a row make it unhealthy."""
    new = dict(state)
    if ok:
        new["Status"], new["FailingStreak"] = "healthy", 0
    elif not in_start_period:
        new["FailingStreak"] = int(state.get("FailingStreak", 0)) + 1
        if new["FailingStreak"] >= retries:
            new["Status"] = "unhealthy"
    return new


def _rfc3339(ns: int) -> str:
    secs, frac = divmod(ns, _NS)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def _check_once(rt: Any, cid: str, argv: list[str], timeout_ns: int) -> tuple[int, str]:
    """Run one check in the container; (exit code, output). A timeout is exit code -1."""
    r, w = os.pipe()
    saved = os.dup(1), os.dup(2)
    os.dup2(w, 1)
    os.dup2(w, 2)
    os.close(w)
    try:
        pid = rt.exec(cid, argv, env=[], cwd=None, user=None, wait=True)
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
    os.set_blocking(r, False)
    out = b""
    deadline = time.monotonic() + timeout_ns / _NS
    code = None
    while code is None:
        try:
            chunk = os.read(r, 65536)
            if chunk:
                out = (out + chunk)[-_OUTPUT:]
        except BlockingIOError:
            pass
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            code = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            code = -1
            out += b"\nHealth check exceeded timeout"
            break
        time.sleep(0.01)
    try:
        out = (out + os.read(r, 65536))[-_OUTPUT:]
    except OSError:
        pass
    os.close(r)
    return code, out.decode(errors="replace")


def run_checks(root: str, run: str, cid: str, cfg: Mapping[str, Any]) -> None:
    """The checker's loop, until the container is not running (or the monitor died)."""
    from berth.runtime import _sys
    from berth.store.db import Database

    from .runtimes import open_runtime
    _sys.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL: never outlive the monitor
    db = Database(root)
    rt = open_runtime(run, db.read("SELECT json_extract(config, '$.runtime') FROM containers "
                                   "WHERE id = ?", (cid,))[0][0])  # --runtime
    started = time.time_ns()
    state: dict[str, Any] = {"Status": "starting", "FailingStreak": 0, "Log": []}
    argv = command(cfg["Test"])
    name = db.read("SELECT name FROM containers WHERE id = ?", (cid,))[0][0]

    def save(event: bool) -> None:
        with db.transaction() as tx:
            tx.execute("UPDATE containers SET health = ? WHERE id = ?", (json.dumps(state), cid))
            if event:
                db.record_event("container", f"health_status: {state['Status']}", cid,
                                {"name": name})

    save(False)
    while True:
        time.sleep(cfg["Interval"] / _NS)
        row = db.read("SELECT status FROM containers WHERE id = ?", (cid,))
        if not row or row[0][0] != "running":
            return
        t0 = time.time_ns()
        try:
            code, output = _check_once(rt, cid, argv, cfg["Timeout"])
        except Exception as e:  # noqa: BLE001 - a check that cannot run has failed
            code, output = -1, str(e)
        before = state["Status"]
        # the start period ends early with the first success (docker's rule)
        in_start = before == "starting" and time.time_ns() - started < cfg["StartPeriod"]
        state.update(next_state(state, code == 0, in_start, cfg["Retries"]))
        state["Log"] = [*state["Log"], {"Start": _rfc3339(t0), "End": _rfc3339(time.time_ns()),
                                        "ExitCode": code, "Output": output}][-_KEEP:]
        save(state["Status"] != before)
