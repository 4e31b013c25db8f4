"""system-df: `berth system df` (and `-v`) on a store with 500 images and 500 containers
(quick: 100 and 100), beside `berth images` and `berth ps -a` on the same store.

The store is made cheaply, in-process: one imported busybox image, then images that differ
only in a label of their config (the same layer, so no unpack: ImageStore.add_image) each with
a tag, and containers made with Engine.create, each on one of those images. df reads records
(a few SQL queries, one stat per container log), so its time should grow with the number of
rows, not with what is on disk.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from helpers.rootfs import make_rootfs, make_rootfs_tar

from . import Context, Measurement, Tool, measure_interleaved, scenario

BERTH = "/opt/berth-venv/bin/berth"


def _populate(root: Path, run: Path, tar: Path, n_images: int, n_containers: int) -> None:
    from berth.engine.containers import Engine
    from berth.engine.spec import CreateOptions
    from berth.image import archive
    from berth.image.images import LayerSource
    from berth.oci.image_spec import ImageConfig
    eng = Engine(root, run)
    try:
        base = eng.images.get(archive.import_rootfs(eng.images, str(tar), reference="bench/df:0"))
        blob = eng.images.layer_blob(base.layers[0])
        assert blob is not None
        ids = [base.id]
        for i in range(1, n_images):
            doc = dict(base.config.doc)
            doc["config"] = {**(doc.get("config") or {}), "Labels": {"bench.n": str(i)}}
            cfg = ImageConfig.from_doc(doc)
            src = LayerSource(base.config.diff_ids[0],
                              lambda: open(eng.images.blobs.path(blob[0]), "rb"))
            ids.append(eng.images.add_image(cfg.raw, [src], tags=[f"bench/df:{i}"],
                                            event=None).id)
        for i in range(n_containers):
            eng.create(f"bench/df:{i % n_images}", CreateOptions(args=["true"]),
                       name=f"df{i}")
    finally:
        eng.close()


@scenario("system-df", reference="berth system df",
          description="system df with 500 images and 500 containers (quick: 100/100)")
def system_df(ctx: Context) -> list[Measurement]:
    name = "system-df"
    work = ctx.workdir
    root, run = work / "berth", work / "berth-run"
    tar = make_rootfs_tar(work / "rootfs.tar", make_rootfs(work / "rootfs"))
    count = 100 if ctx.quick else 500
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "BERTH_ROOT": str(root),
           "BERTH_RUN": str(run)}
    _populate(root, run, tar, count, count)
    try:
        prefix = ["env", "-i", *(f"{k}={v}" for k, v in env.items())]
        tools = [Tool("berth system df",
                      lambda i: [*prefix, BERTH, "system", "df"]),
                 Tool("berth system df -v", lambda i: [*prefix, BERTH, "system", "df", "-v"]),
                 Tool("berth images (baseline)", lambda i: [*prefix, BERTH, "images"]),
                 Tool("berth ps -a (baseline)", lambda i: [*prefix, BERTH, "ps", "-a"])]
        measured = measure_interleaved(name, tools[0].name, tools, max(1, min(ctx.n, 10)))
        return measured
    finally:
        ids = subprocess.run([BERTH, "ps", "-aq"], env=env, capture_output=True,
                             text=True).stdout.split()
        if ids:
            subprocess.run([BERTH, "rm", "-f", *ids], env=env, capture_output=True)
