"""`system df` and the prunes on real images (import, build, commit) and containers: df's
figures against the bytes of the store's layer directories, each prune against its own dry
run, docker's prompt, and `system check` clean after every prune."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from berth.cli.format import human_size
from berth.store.db import Database
from helpers.rootfs import make_rootfs_tar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from conftest import BerthEnv


def berth(*args: str, check: bool = True, input: str | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "berth.cli.main", *args], capture_output=True,
                       text=True, input=input, timeout=timeout)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def tree_bytes(dirs: set[str]) -> int:
    """`du -sb --apparent-size` as the store counts a layer: regular files and symlinks, each
    inode once."""
    seen: dict[tuple[int, int], int] = {}
    for top in dirs:
        for dirpath, dirnames, filenames in os.walk(top):
            for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                st = os.lstat(os.path.join(dirpath, n))
                seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())


def layer_dirs(*refs: str) -> set[str]:
    out: set[str] = set()
    for ref in refs:
        data = json.loads(berth("image", "inspect", ref).stdout)[0]["GraphDriver"]["Data"]
        out.add(data["UpperDir"])
        out.update(filter(None, data.get("LowerDir", "").split(":")))
    return out


def all_layer_dirs(root: Path) -> set[str]:
    return {str(p) for p in (root / "layers").iterdir() if p.is_dir() and
            not p.name.startswith(".")}


def df() -> dict[str, dict[str, str]]:
    rows = [json.loads(line) for line in
            berth("system", "df", "--format", "{{json .}}").stdout.splitlines()]
    return {r["Type"]: r for r in rows}


def size(n: int) -> str:
    return human_size(n, 4)


def check_clean() -> None:
    r = berth("system", "check", check=False)
    assert r.returncode == 0 and "damage" not in r.stdout.lower(), r.stdout


def as_done(dry: str) -> str:
    """A dry run's text as the real run prints it."""
    lines = []
    for line in dry.splitlines():
        if line.startswith("Would delete "):
            line = "Deleted " + line.removeprefix("Would delete ")
        elif line.startswith("Total space that would be reclaimed: "):
            line = "Total reclaimed space: " + line.split(": ", 1)[1].split(" (")[0]
        lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.fixture
def store(berth_env: BerthEnv, rootfs: Path, tmp_path: Path):
    tar = make_rootfs_tar(tmp_path / "rootfs.tar", rootfs)
    berth("import", str(tar), "base:1")
    yield berth_env.root
    ids = berth("ps", "-aq", check=False).stdout.split()
    if ids:
        berth("rm", "-f", *ids, check=False)


def build(tmp_path: Path, name: str, dockerfile: str, tag: str) -> str:
    ctx = tmp_path / name
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    return berth("build", "--network", "none", "-q", "-t", tag, str(ctx)).stdout.strip()


APP = ("FROM base:1\nRUN dd if=/dev/zero of=/big bs=1k count=60 2>/dev/null\nENV X={x}\n"
       "RUN echo {x} > /x && ln -s /x /y\n")


def test_df_figures_are_the_layer_bytes_through_builds_commits_and_prunes(
        store: Path, tmp_path: Path) -> None:
    old_app = build(tmp_path, "a", APP.format(x=1), "app:1")
    berth("run", "--name", "writer", "base:1", "sh", "-c",
          "dd if=/dev/zero of=/w bs=1k count=20 2>/dev/null")
    berth("commit", "writer", "committed:1")
    berth("create", "--name", "user", "app:1", "true")  # keeps the first app:1 in use
    new_app = build(tmp_path, "a", APP.format(x=2), "app:1")  # the old final step dangles
    assert old_app != new_app
    berth("run", "-d", "--name", "busy", "base:1", "sleep", "300")

    root = store
    kept = layer_dirs("base:1", "app:1", "committed:1", old_app)
    everything = all_layer_dirs(root)
    d = df()
    assert d["Images"]["TotalCount"] == "4" and d["Images"]["Active"] == "2"
    assert d["Images"]["Size"] == size(tree_bytes(kept))
    # the steps only the first build needs... none: the first app:1 is in use, so its steps
    # lie under it; the second build's RUN steps under the new app:1
    assert d["Build Cache"]["Size"] == size(tree_bytes(everything - kept))
    assert d["Build Cache"]["TotalCount"] == "5"  # RUN dd, hit by the rebuild; 2 ENV, 2 RUN
    assert d["Containers"]["TotalCount"] == "3" and d["Containers"]["Active"] == "1"
    with Database(root) as db:
        cols = {r[1] for r in db.read("PRAGMA table_info(containers)")}
        rw = sum(r[0] for r in db.read("SELECT size_rw FROM containers")) \
            if "size_rw" in cols else 0
    assert d["Containers"]["Size"] == size(rw)
    assert d["Local Volumes"]["TotalCount"] == "0"
    logs = sum(p.stat().st_size for p in (root / "containers").glob("*/*-json.log"))
    assert d["Container Logs"]["Size"] == size(logs)
    assert d["Leftovers"]["TotalCount"] == "0"

    # the verbose tables: one row per image of the Images line, one per cache entry
    verbose = berth("system", "df", "-v").stdout
    assert verbose.startswith("Images space usage:\n\nREPOSITORY   TAG ")
    for section in ("\nContainers space usage:\n\nCONTAINER ID   IMAGE ",
                    "\nLocal Volumes space usage:\n\nVOLUME NAME   LINKS     SIZE\n",
                    "\nBuild cache usage: "):
        assert section in verbose
    assert "\nCACHE ID " in verbose and "   CACHE TYPE   SIZE      CREATED   " in verbose
    data = json.loads(berth("system", "df", "-v", "--format", "{{json .}}").stdout)
    assert len(data["Images"]) == 4 and len(data["BuildCache"]) == 5
    assert {c["Names"] for c in data["Containers"]} == {"writer", "user", "busy"}

    # container prune: its dry run, docker's prompt, the real thing
    dry = berth("container", "prune", "--dry-run").stdout
    assert dry.startswith("Would delete Containers:\n") and dry.count("\n") == 5
    r = berth("container", "prune", input="n\n", check=False)
    assert (r.returncode, r.stdout) == (1, "WARNING! This will remove all stopped containers."
                                           "\nAre you sure you want to continue? [y/N] ")
    assert len(berth("ps", "-aq").stdout.split()) == 3
    r = berth("container", "prune", input="y\n")
    assert r.stdout.removeprefix("WARNING! This will remove all stopped containers.\n"
                                 "Are you sure you want to continue? [y/N] ") == as_done(dry)
    assert berth("ps", "-aq").stdout.split() == [berth("ps", "-q").stdout.strip()]
    check_clean()

    # image prune: the first app:1 is no longer used, its last step goes with it
    dry = berth("image", "prune", "--dry-run").stdout
    assert f"deleted: {old_app}\n" in dry
    assert berth("image", "prune", "-f").stdout == as_done(dry)
    check_clean()
    kept = layer_dirs("base:1", "app:1", "committed:1")
    d = df()
    assert d["Images"]["TotalCount"] == "3"
    assert d["Images"]["Size"] == size(tree_bytes(kept))
    assert d["Build Cache"]["Size"] == size(tree_bytes(all_layer_dirs(root) - kept))

    # builder prune: nothing dangles now; -a forgets the entries (the next build runs again)
    assert berth("builder", "prune", "-f").stdout == "Total reclaimed space: 0B\n"
    dry = berth("builder", "prune", "-a", "--dry-run").stdout
    assert dry.startswith("Would delete build cache objects:\n")
    assert berth("builder", "prune", "-af").stdout == as_done(dry)
    assert df()["Build Cache"]["TotalCount"] == "0"
    log = berth("build", "--network", "none", str(tmp_path / "a")).stdout
    assert "Using cache" not in log
    check_clean()

    # system prune -a: everything but what the running container stands on
    dry = berth("system", "prune", "-a", "--dry-run").stdout
    r = berth("system", "prune", "-a", input="y\n")
    warning = ("WARNING! This will remove:\n  - all stopped containers\n  - all images without "
               "at least one container associated to them\n  - all build cache\n\n"
               "Are you sure you want to continue? [y/N] ")
    assert r.stdout.startswith(warning)
    assert r.stdout.removeprefix(warning) == as_done(dry)
    check_clean()
    assert berth("images", "-aq").stdout.split() == \
        [json.loads(berth("image", "inspect", "base:1").stdout)[0]["Id"][7:19]]
    d = df()
    assert d["Images"]["Size"] == size(tree_bytes(layer_dirs("base:1")))
    assert d["Images"]["Reclaimable"] == "0B (0%)"
    assert d["Build Cache"]["Size"] == "0B"
    assert all_layer_dirs(root) == layer_dirs("base:1")
    # a Unix time a second ahead: a duration counts whole seconds, so "0s" could miss the
    # events of the current second
    actions = berth("events", "--since", "10m", "--until", f"{time.time() + 1:.3f}",
                    "--filter", "event=prune",
                    "--format", "{{.Type}}").stdout.split()
    assert actions == ["container", "image", "builder", "builder",  # prune, -a
                       "container", "image", "builder"]


def test_prune_filters_until_and_label(store: Path, tmp_path: Path) -> None:
    berth("create", "--name", "keep", "--label", "keep=yes", "base:1", "true")
    berth("create", "--name", "drop", "base:1", "true")
    out = berth("container", "prune", "-f", "--filter", "label!=keep=yes").stdout
    assert out.count("\n") == 4  # header, one id, blank line, total
    assert berth("ps", "-a", "--format", "{{.Names}}").stdout == "keep\n"
    out = berth("container", "prune", "-f", "--filter", "until=1h").stdout
    assert out == "Total reclaimed space: 0B\n"  # created less than an hour ago
    r = berth("system", "prune", "-f", "--volumes", "--filter", "until=1h", check=False)
    assert r.returncode == 1 and 'The "until" filter is not supported with "--volumes"' \
        in r.stderr
    r = berth("image", "prune", "--filter", "bogus=1", "-f", check=False)
    assert r.returncode == 1 and "invalid filter 'bogus'" in r.stderr
    dry = berth("system", "prune", "--dry-run", "--filter", "label=keep").stdout
    assert dry.startswith("Would delete Containers:\n")
    r = berth("system", "prune", "--filter", "label=keep", input="\n", check=False)
    assert r.returncode == 1 and "  Items to be pruned will be filtered with:\n  - label=keep" \
        "\n\nAre you sure" in r.stdout
    assert berth("ps", "-aq").stdout.strip()
    check_clean()
