"""The config.json engine/spec.py makes, run by berth-runtime on an imported image's overlay:
the image's CMD, USER, WORKDIR and ENV and the `run` options reach the container's process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from berth.engine.spec import CreateOptions, container_spec
from berth.image import archive
from berth.image.images import ImageStore
from berth.image.unpack import prepare_rootfs
from berth.store import mount as mnt
from helpers.rootfs import make_rootfs_tar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from conftest import BerthEnv


def test_image_config_and_options_reach_the_process(berth_env: BerthEnv, rootfs: Path,
                                                    berth_runtime: Path) -> None:
    tar = make_rootfs_tar(berth_env.tmp / "rootfs.tar", rootfs)
    store = ImageStore(berth_env.root)
    try:
        archive.import_rootfs(store, tar, reference="probe:1", changes=[
            'CMD ["/bin/sh", "-c", "id -u; id -g; pwd; echo $MODE $EXTRA; '
            'cat /proc/self/status | grep -E ^NoNewPrivs; ulimit -n; hostname"]',
            "WORKDIR /tmp", "USER nobody", "ENV MODE=image"])
        img = store.get("probe:1")
        [m] = prepare_rootfs(store, img, "c1")
        mnt.mount_all([m])
        try:
            merged = Path(m.target)
            spec = container_spec(
                img.config.doc["config"],
                CreateOptions(env=["EXTRA=flag"], ulimits=["nofile=321:321"],
                              security_opt=["no-new-privileges"]),
                rootfs=str(merged), hostname="c1host",
                passwd=(merged / "etc/passwd").read_text(),
                group=(merged / "etc/group").read_text())
            bundle = berth_env.tmp / "bundle"
            bundle.mkdir()
            (bundle / "config.json").write_text(json.dumps(spec))
            r = subprocess.run([str(berth_runtime), "run", "--bundle", str(bundle), "c1"],
                               capture_output=True, text=True, timeout=60,
                               env=berth_env.environ())
        finally:
            mnt.unmount(m.target)
    finally:
        store.close()
    assert r.returncode == 0, r.stderr
    nobody = [line for line in (rootfs / "etc/passwd").read_text().splitlines()
              if line.startswith("nobody:")][0].split(":")
    assert r.stdout.split("\n")[:7] == [nobody[2], nobody[3], "/tmp", "image flag",
                                        "NoNewPrivs:\t1", "321", "c1host"]
