"""Others read what berth writes: podman loads berth's save to the same image id and diff_ids,
skopeo inspects it as a docker-archive and converts it to an OCI layout, and umoci unpacks that
layout to the same root filesystem. Each tool runs with its storage in the test's own directory
(podman on the vfs driver: no mounts), so nothing outlives the test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from berth.image import archive
from berth.image.images import ImageStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from conftest import BerthEnv

FIXTURES = Path(os.environ.get("BERTH_FIXTURES", "/work/shared/fixtures"))
LAYERS = FIXTURES / "docker20-layers.tar"
pytestmark = pytest.mark.skipif(not LAYERS.is_file(), reason=f"no fixtures in {FIXTURES}")


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (scripts/install.sh --test installs it)")
    return path


@pytest.fixture(autouse=True)
def no_containers_cache_left() -> None:
    """skopeo and podman keep a blob-info cache in /var/lib/containers: remove it if we made it."""
    made = [p for p in (Path("/var/lib/containers"), Path("/var/lib/containers/cache"))
            if not p.exists()]
    yield
    for p in made:
        shutil.rmtree(p, ignore_errors=True)


@pytest.fixture
def saved(berth_env: BerthEnv) -> tuple[Path, ImageStore]:
    store = ImageStore(berth_env.root)
    archive.load(store, LAYERS)
    out = berth_env.tmp / "saved.tar"
    archive.save_to_file(store, ["fixture/layers:1"], out)
    yield out, store
    store.close()


def test_podman_loads_berths_save_with_the_same_id(saved, berth_env: BerthEnv) -> None:
    podman = need("podman")
    out, store = saved
    conf = berth_env.tmp / "containers.conf"
    conf.write_text('[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "none"\n')
    runroot = tempfile.mkdtemp(prefix="berth-prun-", dir="/tmp")  # podman: at most 50 chars
    base = [podman, "--root", str(berth_env.tmp / "pstore"), "--runroot", runroot,
            "--storage-driver", "vfs"]
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    try:
        r = subprocess.run([*base, "load", "-i", str(out)], env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "Loaded image: docker.io/fixture/layers:1" in r.stdout
        r = subprocess.run([*base, "image", "inspect", "docker.io/fixture/layers:1"], env=env,
                           capture_output=True, text=True, timeout=60, check=True)
        [doc] = json.loads(r.stdout)
        img = store.get("fixture/layers:1")
        assert "sha256:" + doc["Id"].removeprefix("sha256:") == img.id
        assert doc["RootFS"]["Layers"] == list(img.config.diff_ids)
    finally:
        subprocess.run([*base, "system", "reset", "--force"], env=env, capture_output=True,
                       timeout=60)
        shutil.rmtree(runroot, ignore_errors=True)


def test_skopeo_inspects_and_umoci_unpacks_berths_save(saved, berth_env: BerthEnv) -> None:
    skopeo, umoci = need("skopeo"), need("umoci")
    out, store = saved
    img = store.get("fixture/layers:1")
    r = subprocess.run([skopeo, "inspect", f"docker-archive:{out}"], capture_output=True,
                       text=True, timeout=60, check=True)
    doc = json.loads(r.stdout)
    assert doc["Layers"] == list(img.config.diff_ids)
    assert doc["Labels"]["org.example.fixture"] == "layers"
    r = subprocess.run([skopeo, "inspect", "--config", "--raw", f"docker-archive:{out}"],
                       capture_output=True, timeout=60, check=True)
    assert r.stdout == img.config.raw
    layout = berth_env.tmp / "oci"
    subprocess.run([skopeo, "copy", "-q", f"docker-archive:{out}", f"oci:{layout}:fx"],
                   capture_output=True, timeout=120, check=True)
    bundle = berth_env.tmp / "bundle"
    subprocess.run([umoci, "unpack", "--image", f"{layout}:fx", str(bundle)],
                   capture_output=True, timeout=120, check=True)
    rootfs = bundle / "rootfs"
    assert (rootfs / "opt/app/data/secret.txt").stat().st_uid == 123
    assert (rootfs / "opt/app/bin/suid-true").stat().st_mode & 0o7777 == 0o4755
    assert os.readlink(rootfs / "opt/app/bin/rel-link") == "../data/secret.txt"
    assert os.stat(rootfs / "opt/app/data/hard-a").st_ino == \
        os.stat(rootfs / "opt/app/data/hard-b").st_ino
