"""OCI runtimes driven through their command lines, for the conformance suite.

    RUNTIMES            ("runc", "berth-runtime"): runc is skipped when it is not installed
    OCIRuntime          one runtime binary with its own --root: run, run_detached, exec,
                        delete, cleanup (delete --force of everything under its root)
    make_runtime(name, root)  an OCIRuntime, or skip (runc missing) / fail (berth-runtime
                        missing: it is what the suite tests)
    runtime_binary(name)  the binary of a runtime, or None when not installed

Every container a test makes gets a unique id (`unique_id`) and, when the test sets one, a unique
absolute linux.cgroupsPath (`unique_cgroups_path`), so that what a runtime leaves behind names
the test run and is caught by the berth_env leak check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import find_tool

RUNTIMES = ("runc", "berth-runtime")


def runtime_binary(name: str) -> Path | None:
    if name == "berth-runtime":
        return find_tool("berth-runtime")
    found = shutil.which(name)
    return Path(found) if found else None


def unique_id(prefix: str = "conf") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def unique_cgroups_path() -> str:
    return f"/berth-conf-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (f"$ {' '.join(self.argv)}\nexit status {self.returncode}\n"
                f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}")


@dataclass(frozen=True)
class OCIRuntime:
    name: str
    binary: Path
    root: Path
    env: dict[str, str] | None = None

    def argv(self, *args: str) -> list[str]:
        return [str(self.binary), "--root", str(self.root), *args]

    def call(self, *args: str, timeout: float = 30, cwd: Path | None = None,
             stdin: int | None = subprocess.DEVNULL, pass_fds: tuple[int, ...] = ()) -> Result:
        # stdout/stderr go to files, not pipes: a container that outlives the call (run -d)
        # keeps its copies of them open, and a pipe would then never reach end of file.
        argv = self.argv(*args)
        tmp = self.root.parent
        tmp.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:8]
        out_path, err_path = tmp / f".{self.name}-{tag}.out", tmp / f".{self.name}-{tag}.err"
        try:
            with open(out_path, "w+b") as out, open(err_path, "w+b") as err:
                proc = subprocess.run(argv, stdin=stdin, stdout=out, stderr=err, cwd=cwd,
                                      timeout=timeout, env=self.env, pass_fds=pass_fds)
                out.seek(0)
                err.seek(0)
                return Result(argv, proc.returncode, out.read().decode(errors="replace"),
                              err.read().decode(errors="replace"))
        finally:
            for p in (out_path, err_path):
                p.unlink(missing_ok=True)

    def run(self, cid: str, bundle: Path, timeout: float = 30,
            pass_fds: tuple[int, ...] = ()) -> Result:
        """`run` in the foreground: create, start, wait, delete."""
        try:
            return self.call("run", "--bundle", str(bundle), cid, timeout=timeout,
                             pass_fds=pass_fds)
        finally:
            self.delete(cid)

    def run_detached(self, cid: str, bundle: Path) -> Result:
        return self.call("run", "--detach", "--bundle", str(bundle), cid)

    def exec(self, cid: str, *argv: str, options: tuple[str, ...] = (), timeout: float = 30,
             pass_fds: tuple[int, ...] = ()) -> Result:
        return self.call("exec", *options, cid, *argv, timeout=timeout, pass_fds=pass_fds)

    def delete(self, cid: str) -> None:
        """delete --force, quietly: for finally blocks (the container may be gone already)."""
        if (self.root / cid).exists():
            subprocess.run(self.argv("delete", "--force", cid), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30,
                           env=self.env)

    def cleanup(self) -> None:
        """delete --force every container under this runtime's root."""
        if not self.root.is_dir():
            return
        for entry in sorted(os.listdir(self.root)):
            if not entry.startswith("."):
                self.delete(entry)


def make_runtime(name: str, root: Path) -> OCIRuntime:
    binary = runtime_binary(name)
    if binary is None:
        if name == "berth-runtime":
            pytest.fail("berth-runtime is not installed: `pip install -e .` in the venv "
                        "(README.md)", pytrace=False)
        pytest.skip(f"{name} is not installed")
    return OCIRuntime(name, binary, root)
