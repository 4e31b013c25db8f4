"""Imports point downwards only (shared/DESIGN.md, "Rules of direction").

Every module under src/berth is parsed (never imported) and each reference to another berth
layer is checked against ALLOWED: `import`, `from ... import` (relative ones resolved), imports
under `if TYPE_CHECKING:` or inside functions, and string constants that name a berth module
(`importlib.import_module("berth.engine.x")`, lazy command tables).

A second test starts the fronts' modules in a fresh interpreter and checks that start-up stays
lean: no heavy module is imported before a command needs it.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "berth"

# layer -> the berth layers it may import ("berth" is the top package's own __init__).
_FRONT = frozenset({"errors", "oci", "runtime", "store", "image", "engine", "build"})
ALLOWED: dict[str, frozenset[str]] = {
    "berth": frozenset(),
    "errors": frozenset(),
    "oci": frozenset({"errors"}),
    "runtime": frozenset({"oci", "errors"}),
    "store": frozenset({"oci", "errors"}),
    "image": frozenset({"store", "oci", "errors"}),
    "engine": frozenset({"runtime", "store", "image", "oci", "errors"}),
    "build": frozenset({"engine", "image", "store", "oci", "errors"}),
    "cli": _FRONT,
    "api": _FRONT,
    "__main__": _FRONT | {"cli"},  # `python -m berth` is the CLI
}

_MODULE_NAME = re.compile(r"berth(\.[A-Za-z_][A-Za-z0-9_]*)+")


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    layer: str
    target: str

    def __str__(self) -> str:
        allowed = ", ".join(sorted(ALLOWED.get(self.layer, ()))) or "nothing of berth"
        return (f"{self.path}:{self.line}: {self.layer}/ imports {self.target}; "
                f"{self.layer}/ may import only: {allowed}")


def module_name(path: Path, package_dir: Path) -> str:
    rel = path.relative_to(package_dir.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    """berth.runtime.cgroups.v2 -> runtime; berth.errors -> errors; berth -> berth."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "berth"


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, module) for every berth module that `source` refers to."""
    found: list[tuple[int, str]] = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                target = _resolve_relative(module, is_package, node.level, node.module)
            else:
                target = node.module or ""
            # `from berth import engine` names berth.engine; `from berth.x import y` needs only x;
            # `from berth import __version__` needs only the top package.
            if target == "berth":
                found.extend((node.lineno, "berth" if a.name.startswith("__") else
                              f"berth.{a.name}") for a in node.names)
            else:
                found.append((node.lineno, target))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _MODULE_NAME.fullmatch(node.value):
                found.append((node.lineno, node.value))
    return [(line, m) for line, m in found if m == "berth" or m.startswith("berth.")]


def violations(package_dir: Path = PACKAGE) -> list[Violation]:
    out: list[Violation] = []
    for path in sorted(package_dir.rglob("*.py")):
        module = module_name(path, package_dir)
        layer = layer_of(module)
        rel = str(path.relative_to(package_dir.parent))  # berth/runtime/cli.py
        if layer not in ALLOWED:
            out.append(Violation(rel, 1, layer, "(unknown layer: add it to ALLOWED in "
                                 "tests/unit/test_layering.py and to DESIGN.md)"))
            continue
        allowed = ALLOWED[layer] | {layer, "berth"}
        source = path.read_text(encoding="utf-8")
        for line, target in imported_modules(source, module, path.name == "__init__.py"):
            target_layer = layer_of(target)
            if target_layer not in allowed:
                out.append(Violation(rel, line, layer, target))
    return out


def test_imports_point_downwards() -> None:
    assert PACKAGE.is_dir(), f"{PACKAGE} not found"
    found = violations()
    assert not found, "upward or sideways imports:\n" + "\n".join(map(str, found))


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "src" / "berth"
    for name, text in files.items():
        p = pkg / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return pkg


def test_checker_catches_each_form(tmp_path: Path) -> None:
    pkg = _tree(tmp_path, {
        "__init__.py": "",
        "errors.py": "",
        "oci/__init__.py": "from berth import errors, __version__\nfrom .. import errors\n",
        "runtime/__init__.py": "",
        "runtime/a.py": "import berth.store.blobs\n",
        "runtime/b.py": "from ..engine import containers\n",
        "runtime/c.py": "from berth import image\n",
        "runtime/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                        "    from berth.engine.x import Y\n",
        "runtime/e.py": "import importlib\nimportlib.import_module('berth.build.builder')\n",
        "runtime/ok.py": "from . import a\nfrom ..oci import spec\nfrom berth.errors import X\n"
                         "'berth is a container engine.'\n",
        "cli/main.py": "import berth.api.server\nCOMMANDS = {'run': 'berth.cli.commands.run'}\n",
        "api/server.py": "from berth.engine import containers\n",
        "misc.py": "",
    })
    found = {(v.path.removeprefix("berth/"), v.target) for v in violations(pkg)}
    assert found == {
        ("runtime/a.py", "berth.store.blobs"),
        ("runtime/b.py", "berth.engine"),
        ("runtime/c.py", "berth.image"),
        ("runtime/d.py", "berth.engine.x"),
        ("runtime/e.py", "berth.build.builder"),
        ("cli/main.py", "berth.api.server"),
        ("misc.py", "(unknown layer: add it to ALLOWED in tests/unit/test_layering.py and to "
                    "DESIGN.md)"),
    }


# --- lean start-up ---------------------------------------------------------------------------

# Modules a front must not pay for at start-up: imported only by the command that needs them.
HEAVY = ("asyncio", "sqlite3", "ssl", "http.client", "http.server", "email", "urllib.request",
         "multiprocessing", "concurrent.futures", "tarfile", "xml.etree", "pyroute2", "zstandard")
STARTUP = {
    # berth-runtime runs once per container operation: only the runtime and what it needs.
    "berth.runtime.cli": HEAVY + ("berth.store", "berth.image", "berth.engine", "berth.build"),
    # `berth --version` / `--help` load no command module.
    "berth.cli.main": HEAVY + ("berth.engine", "berth.build", "berth.store", "berth.image"),
    # the `berth` script's fast path to the resident service: before anything heavy
    "berth.cli.client": HEAVY + ("berth.engine", "berth.build", "berth.store", "berth.image",
                                 "berth.runtime", "berth.cli.main", "socket", "selectors",
                                 "enum", "json"),
}


@pytest.mark.parametrize("module", sorted(STARTUP))
def test_startup_imports_stay_lean(module: str) -> None:
    rel = Path(*module.split("."))
    if not ((SRC / rel).with_suffix(".py").exists() or (SRC / rel / "__init__.py").exists()):
        pytest.skip(f"{module} does not exist yet")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(SRC)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0, f"import {module} failed:\n{r.stderr}"
    loaded = set(r.stdout.split())
    heavy = sorted(m for m in loaded for h in STARTUP[module] if m == h or m.startswith(h + "."))
    assert not heavy, f"importing {module} also imports {', '.join(heavy)}"
