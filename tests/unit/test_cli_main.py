"""The `berth` front: lean start-up, docker's exit code for an unknown command."""

from __future__ import annotations

import subprocess
import sys

from berth.cli import main as cli


def test_version_and_help(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("berth version ")
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage:  berth [OPTIONS] COMMAND" in out and "version" in out


def test_unknown_command_exits_1_as_docker(capsys):
    assert cli.main(["frobnicate"]) == 1
    assert "'frobnicate' is not a berth command" in capsys.readouterr().err


def test_start_up_imports_no_command_module_and_nothing_heavy():
    code = ("import sys; from berth.cli import main; main.main(['--version']); "
            "bad = [m for m in sys.modules if m.startswith('berth.cli.commands.') "
            "or m.split('.')[0] in ('pyroute2', 'zstandard', 'sqlite3', 'ctypes', 'argparse')]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_runtime_cli_start_up_is_lean():
    """berth-runtime parses its command line without argparse, typing or dataclasses."""
    code = ("import sys; from berth.runtime import cli; cli.parse_args(['state', 'x']); "
            "import berth.runtime.container; "
            "print([m for m in ('argparse', 'typing', 'dataclasses', 'pathlib', 'subprocess') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": ":".join(sys.path)})
    assert out.stdout.strip() == "[]"
