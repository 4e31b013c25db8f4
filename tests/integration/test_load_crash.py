"""Crash safety of `berth load`: killed with SIGKILL at random moments, it leaves either a whole
image or none — `image ls` never shows a partial one — and the next load works. What the killed
runs left behind is garbage that `system check --repair` removes, never a broken image."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from berth.image.images import ImageStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from conftest import BerthEnv

KILLS = int(os.environ.get("BERTH_CRASH_KILLS", "20"))


def build_archive(path: Path, layers: int = 6, files: int = 800) -> None:
    rnd = random.Random(7)
    tars = []
    for n in range(layers):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for i in range(files):
                data = rnd.randbytes(rnd.randrange(200, 3000))
                ti = tarfile.TarInfo(f"layer{n}/d{i % 20}/f{i}")
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
        tars.append(buf.getvalue())
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars]},
        "history": [{"created_by": f"layer {n}"} for n in range(layers)]}).encode()
    chex = hashlib.sha256(config).hexdigest()
    with tarfile.open(path, "w") as out:
        def put(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            out.addfile(ti, io.BytesIO(data))
        put(f"{chex}.json", config)
        for n, t in enumerate(tars):
            put(f"l{n}/layer.tar", t)
        put("manifest.json", json.dumps([{"Config": f"{chex}.json", "RepoTags": ["crash:1"],
                                          "Layers": [f"l{n}/layer.tar" for n in range(layers)]
                                          }]).encode())


def berth(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "berth.cli.main", *args], capture_output=True,
                          text=True, timeout=120, **kw)


def assert_whole_or_absent(root: Path) -> bool:
    """Every image the store lists has all its layers unpacked; True if crash:1 is there."""
    store = ImageStore(root)
    try:
        images = store.list(all=True)
        for img in images:
            assert len(img.layers) == len(img.config.diff_ids)
            for d in store.layer_dirs(img):
                assert os.path.isdir(d), f"image {img.short_id} lists a missing layer {d}"
        return any("crash:1" in i.repo_tags for i in images)
    finally:
        store.close()


def test_kill_9_during_load_leaves_no_partial_image(berth_env: BerthEnv) -> None:
    archive = berth_env.tmp / "crash.tar"
    build_archive(archive)
    t0 = time.monotonic()
    r = berth("load", "-i", str(archive), env={**os.environ, "BERTH_ROOT": str(
        berth_env.tmp / "timing")})
    full = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    rnd = random.Random(11)
    loaded_at = []
    for n in range(KILLS):
        p = subprocess.Popen([sys.executable, "-m", "berth.cli.main", "load", "-i",
                              str(archive)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0.05, full))
        p.send_signal(signal.SIGKILL)
        p.wait()
        if assert_whole_or_absent(berth_env.root):
            loaded_at.append(n)
            r = berth("rmi", "crash:1")  # start the next round without it
            assert r.returncode == 0, r.stderr
    r = berth("load", "-i", str(archive))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Loaded image: crash:1\n"
    assert assert_whole_or_absent(berth_env.root)
    check = berth("system", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    repair = berth("system", "check", "--repair")
    assert repair.returncode == 0, repair.stdout + repair.stderr
    store = ImageStore(berth_env.root)
    try:
        leftovers = [n for n in os.listdir(store.layers_dir) if n.startswith(".")]
        assert leftovers == [".lock"]
    finally:
        store.close()


@pytest.mark.parametrize("args, message, code", [
    # docker's CLI exits 1 when a command other than run/create fails (125: a flag it cannot
    # parse)
    (["image", "inspect", "nosuch:1"], "No such image: nosuch:1", 1),
    (["rmi", "nosuch"], "No such image: nosuch:latest", 1),
    (["tag", "nosuch", "x:1"], "No such image: nosuch:latest", 1),
    (["history", "Not::Valid"], "invalid reference format", 1),
    (["save", "nosuch"], "No such image: nosuch:latest", 1),
    (["save", "-o", "/dev/null/x", "nosuch"], "invalid output path", 1),
    (["image", "ls", "--filter", "bogus=1"], "invalid filter 'bogus'", 1),
    (["images", "--format", "{{.ID"], "unclosed action", 1),
])
def test_bad_names_fail_and_create_nothing(berth_env: BerthEnv, args, message, code) -> None:
    r = berth(*args)
    assert r.returncode == code
    assert message in r.stderr
    assert not (berth_env.root / "layers").exists() or \
        os.listdir(berth_env.root / "layers") in ([], [".lock"])


def test_non_tar_to_load_and_import_exit_1(berth_env: BerthEnv) -> None:
    junk = berth_env.tmp / "junk.bin"
    junk.write_bytes(b"definitely not a tar\n" * 100)
    for args in (["load", "-i", str(junk)], ["import", str(junk), "junk:1"]):
        r = berth(*args)
        assert r.returncode == 1, args
        assert r.stderr.startswith("Error: ") and "tar" in r.stderr
    r = berth("load", input=junk.read_text())
    assert r.returncode == 1
    r = berth("images", "-q")
    assert r.returncode == 0 and r.stdout == ""
