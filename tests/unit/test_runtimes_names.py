"""engine/runtimes.py without a kernel: which `--runtime` values are accepted, how a binary's
errors are read back (its JSON --log) and said as berth's own runtime says them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from berth.engine import runtimes
from berth.errors import InvalidArgument


def test_default_names() -> None:
    assert runtimes.resolve("") == "berth"
    assert runtimes.resolve("berth") == "berth"


@pytest.mark.parametrize("name", ["nope", "RUNC", "runc ", "./runc", "io.containerd.runc.v2"])
def test_unknown_names(name: str) -> None:
    with pytest.raises(InvalidArgument, match="unknown or invalid runtime name"):
        runtimes.resolve(name)


def test_paths(tmp_path: Path) -> None:
    assert runtimes.resolve(sys.executable) == os.path.normpath(sys.executable)
    plain = tmp_path / "not-executable"
    plain.write_text("")
    for p in (str(plain), str(tmp_path), str(tmp_path / "missing")):
        with pytest.raises(InvalidArgument, match="unknown or invalid runtime name: /"):
            runtimes.resolve(p)


def test_known_name_not_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InvalidArgument, match="runc .*not installed"):
        runtimes.resolve("runc")
    assert runtimes.available() == {"berth": "berth-runtime"}


def test_known_name_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    exe = tmp_path / "crun"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert runtimes.resolve("crun") == "crun"
    assert runtimes.available()["crun"] == str(exe)


def test_state_directories_keep_apart() -> None:
    assert runtimes._dirname("runc") == "runc"
    a, b = runtimes._dirname("/usr/sbin/runc"), runtimes._dirname("/opt/x/runc")
    assert a.startswith("runc-") and b.startswith("runc-") and a != b


@pytest.mark.parametrize("why, said", [
    ('runc create failed: unable to start container process: exec: "/nonexistent": stat '
     '/nonexistent: no such file or directory', "exec '/nonexistent': no such file or directory"),
    ('runc create failed: unable to start container process: exec: "nosuch": executable file '
     'not found in $PATH', "exec 'nosuch': executable file not found in $PATH"),
    ('runc create failed: unable to start container process: exec: "/etc/passwd": permission '
     'denied', "exec '/etc/passwd': permission denied"),
    ("executable file `nosuch` not found in $PATH: No such file or directory",
     "exec 'nosuch': executable file not found in $PATH"),
    ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2", ""),
])
def test_exec_errors(why: str, said: str) -> None:
    assert runtimes._exec_error(why) == said


def test_log_error(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text('{"level":"warning","msg":"a warning","time":"t"}\n'
                   '{"level":"error","msg":"first","time":"t"}\n'
                   '{"msg": "crun says", "level": "error", "time": "t"}\n')
    assert runtimes._log_error(str(log)) == "crun says"
    assert runtimes._log_error(str(tmp_path / "missing")) == ""


def test_the_module_imports_only_os() -> None:
    import subprocess
    code = ("import sys; import berth.engine.runtimes; "
            "print(sorted(m for m in sys.modules if m.startswith('berth.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert eval(out) == ["berth.engine", "berth.engine.runtimes", "berth.errors"]
