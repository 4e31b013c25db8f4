"""Suites by directory, and the fixtures that give a test its own berth state and containers.

    tests/unit/          pure: no root, no kernel objects. May not use the fixtures below.
    tests/integration/   marked `root`: real kernel, each test with its own BERTH_ROOT/BERTH_RUN.
    tests/conformance/   marked `root`: one suite run against several implementations.
A test marked `root` anywhere is skipped when not running as root.

Fixtures (all need root):
    berth_env      (automatic in tests/integration/ and tests/conformance/)
                   BerthEnv(root, run, tmp): BERTH_ROOT=tmp/root and BERTH_RUN=tmp/run, both
                   new and empty, set in os.environ for the test. After the test: everything new
                   since it started (mounts, *berth* cgroups, netns, veths, bridges, berth*
                   nft tables, berth processes; see
                   helpers/leaks.py) must be gone within 5 s, or the test errors at teardown.
                   What is provably the test's own (mounts under its tmp dir, processes naming
                   it) is then removed so later tests start clean. BERTH_LEAK_CHECK=0 turns the
                   check off (for runs beside other sessions on a shared machine).
    rootfs         Path tmp/rootfs: a private copy of the session's busybox rootfs.
    bundle         factory: bundle(args=("true",), *, name=None, **overrides) -> Path of a new
                   OCI bundle (config.json as `runc spec`, terminal false, + a rootfs copy);
                   overrides are deep-merged into config.json (see helpers/bundle.py).
    rootfs_cache   (session) Path of the built rootfs every copy comes from. Never write to it.
    berth_runtime  Path of the installed `berth-runtime` console script.
Fixtures that create containers or mounts should depend on berth_env, so that its check runs
after their own teardown.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:  # `from helpers import ...` whatever pytest's import mode
    sys.path.insert(0, str(TESTS))

from helpers import find_tool, leaks  # noqa: E402
from helpers.bundle import make_bundle  # noqa: E402
from helpers.rootfs import copy_rootfs, make_rootfs  # noqa: E402

ROOT_DIRS = frozenset({"integration", "conformance"})
ROOT_FIXTURES = frozenset({"berth_env", "rootfs", "bundle", "rootfs_cache", "berth_runtime"})
IS_ROOT = os.geteuid() == 0


def _suite(path: Path) -> str | None:
    """'unit', 'integration', ... : the first directory of `path` below tests/."""
    try:
        parts = Path(path).resolve().relative_to(TESTS).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 else None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "root: needs root and the real kernel")
    config.addinivalue_line("markers", "unit: pure test under tests/unit/ (set by conftest)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        suite = _suite(item.path)
        if suite in ROOT_DIRS:
            item.add_marker(pytest.mark.root)
        elif suite == "unit":
            item.add_marker(pytest.mark.unit)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if _suite(item.path) == "unit":
        used = sorted(ROOT_FIXTURES.intersection(getattr(item, "fixturenames", ())))
        if used or item.get_closest_marker("root"):
            what = f"uses {', '.join(used)}" if used else "is marked root"
            pytest.fail(
                f"{item.nodeid} {what}: tests/unit/ holds pure tests that need neither root nor "
                "the kernel; move it to tests/integration/",
                pytrace=False,
            )
    if item.get_closest_marker("root") and not IS_ROOT:
        pytest.skip("needs root (real namespaces, mounts and cgroups)")


@dataclass(frozen=True)
class BerthEnv:
    root: Path  # BERTH_ROOT
    run: Path  # BERTH_RUN
    tmp: Path  # the test's tmp_path, the parent of both

    @property
    def runtime_root(self) -> Path:
        """berth-runtime's default state root: $BERTH_RUN/runtime."""
        return self.run / "runtime"

    def environ(self, **extra: str) -> dict[str, str]:
        """os.environ with BERTH_ROOT/BERTH_RUN (already set by the fixture) plus `extra`."""
        env = dict(os.environ)
        env.update(BERTH_ROOT=str(self.root), BERTH_RUN=str(self.run), **extra)
        return env


def _leak_check_enabled() -> bool:
    return os.environ.get("BERTH_LEAK_CHECK", "1").lower() not in ("0", "no", "off", "false")


@pytest.fixture
def berth_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BerthEnv]:
    if not IS_ROOT:
        pytest.skip("needs root")
    env = BerthEnv(root=tmp_path / "root", run=tmp_path / "run", tmp=tmp_path)
    env.root.mkdir()
    env.run.mkdir()
    monkeypatch.setenv("BERTH_ROOT", str(env.root))
    monkeypatch.setenv("BERTH_RUN", str(env.run))
    check = _leak_check_enabled()
    before = leaks.leak_snapshot() if check else None
    yield env
    if before is None:
        return
    leaked = leaks.wait_for_no_leaks(before)
    if leaked:
        removed = leaks.cleanup(leaked, [tmp_path])
        report = leaked.describe()
        if removed:
            report += "\nremoved by the fixture afterwards:\n" + "\n".join(
                f"  {r}" for r in removed
            )
        pytest.fail(
            "the test left these on the machine (new since it started, still there after "
            f"5 s):\n{report}\n(another session running containers on this machine at the same "
            "time can cause this too; BERTH_LEAK_CHECK=0 turns the check off)",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _own_berth_env_in_root_suites(request: pytest.FixtureRequest) -> None:
    """Every test of tests/integration/ and tests/conformance/ gets berth_env, asked for or not:
    its own BERTH_ROOT/BERTH_RUN (never the machine's) and the leak check. Being autouse, it is
    set up before the test's other fixtures and so checks after all of their teardowns."""
    if _suite(request.node.path) in ROOT_DIRS:
        request.getfixturevalue("berth_env")


@pytest.fixture(scope="session")
def rootfs_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not IS_ROOT:
        pytest.skip("needs root")
    return make_rootfs(tmp_path_factory.mktemp("rootfs-cache") / "rootfs")


@pytest.fixture
def rootfs(berth_env: BerthEnv, rootfs_cache: Path) -> Path:
    return copy_rootfs(rootfs_cache, berth_env.tmp / "rootfs")


class BundleFactory:
    """bundle(args=("true",), *, name=None, **overrides) -> Path of a new bundle."""

    def __init__(self, base: Path, rootfs_cache: Path) -> None:
        self.base = base
        self.rootfs_cache = rootfs_cache
        self.made: list[Path] = []

    def __call__(
        self, args: tuple[str, ...] | list[str] = ("true",), *, name: str | None = None,
        **overrides: Any,
    ) -> Path:
        if name is None:
            name = f"bundle{len(self.made)}"
            while (self.base / name).exists():
                name += "_"
        path = make_bundle(self.base / name, args, rootfs=self.rootfs_cache, **overrides)
        self.made.append(path)
        return path


@pytest.fixture
def image(berth_env: BerthEnv, rootfs: Path) -> Iterator[str]:
    """The busybox rootfs imported as `bb:test` (CMD ["sh"]); every container is removed
    afterwards. A test file may define its own `image`."""
    from helpers.cli import berth, remove_all_containers
    from helpers.rootfs import make_rootfs_tar
    tar = make_rootfs_tar(berth_env.tmp / "rootfs.tar", rootfs)
    berth("import", "-c", 'CMD ["sh"]', str(tar), "bb:test")
    yield "bb:test"
    remove_all_containers()


@pytest.fixture
def bundle(berth_env: BerthEnv, rootfs_cache: Path) -> BundleFactory:
    return BundleFactory(berth_env.tmp / "bundles", rootfs_cache)


@pytest.fixture
def berth_runtime() -> Path:
    path = find_tool("berth-runtime")
    if path is None:
        pytest.fail(
            "berth-runtime is not installed: `pip install -e .` in the venv (README.md)",
            pytrace=False,
        )
    return path
