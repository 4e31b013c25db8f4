"""engine/system.py's pure part: df arithmetic and what each prune removes, on hand-made
snapshots (a base image, a build on it, a dangling rebuild, containers, cache entries)."""

from __future__ import annotations

import pytest

from berth.engine.system import (
    CacheRecord,
    ContainerRecord,
    ImageRecord,
    PruneFilters,
    Snapshot,
    VolumeRecord,
    disk_usage,
    parse_prune_filters,
    plan_builder_prune,
    plan_container_prune,
    plan_image_prune,
    plan_system_prune,
)
from berth.errors import InvalidArgument

NS = 1_000_000_000


def sid(n: int) -> str:
    return "sha256:" + f"{n:x}".rjust(64, "0")


def layer(n: int) -> str:
    return "sha256:" + f"{n:x}".rjust(64, "f")


def img(n: int, layers: list[int], *, tags: tuple[str, ...] = (), parent: int = 0,
        created: str = "2026-01-01T00:00:00Z") -> ImageRecord:
    return ImageRecord(sid(n), tuple(f"docker.io/library/{t}" for t in tags),
                       sid(parent) if parent else "", tuple(layer(x) for x in layers), created,
                       added_ns=n)


def snapshot(images: list[ImageRecord], sizes: dict[int, int], containers=(), cache=(),
             volumes=(), volume_users=None) -> Snapshot:
    refcounts: dict[str, int] = {layer(x): 0 for x in sizes}
    for i in images:
        for c in i.layers:
            refcounts[c] += 1
    parents = {}
    for i in images:
        for below, c in zip(("", *i.layers), i.layers):
            parents[c] = below
    return Snapshot({i.id: i for i in images}, {layer(x): s for x, s in sizes.items()},
                    refcounts, parents, list(containers), list(cache),
                    volumes=list(volumes), volume_users=volume_users or {},
                    layer_order={layer(x): x for x in sizes})


def ctr(cid: str, image: int, status: str = "exited", *, size_rw: int = 0, log: int = 0,
        created: int = 100, labels=None) -> ContainerRecord:
    return ContainerRecord(cid, cid, sid(image), "x", status, created * NS, labels or {},
                           size_rw, log, bool(log))


def cache(key: int, image: int, parent: int, size: int, used: int = 100) -> CacheRecord:
    return CacheRecord(sid(key + 1000), sid(image), sid(parent), size, 50 * NS, used * NS)


# base:1 (layer 1) <- step 2 (RUN, layer 2) <- step 3 (ENV) <- app:1 = step 4 (RUN, layer 4)
# and a rebuild left step 5 (RUN, layer 5) on step 3, untagged: a dangling build head
def built(**kw) -> Snapshot:
    images = [img(1, [1], tags=("base:1",)), img(2, [1, 2], parent=1),
              img(3, [1, 2], parent=2), img(4, [1, 2, 4], parent=3, tags=("app:1",)),
              img(5, [1, 2, 5], parent=3)]
    entries = [cache(2, 2, 1, 200), cache(3, 3, 2, 0), cache(4, 4, 3, 40), cache(5, 5, 3, 50)]
    return snapshot(images, {1: 1000, 2: 200, 4: 40, 5: 50}, cache=entries, **kw)


def test_df_counts_every_layer_once_and_steps_under_build_cache() -> None:
    du = disk_usage(built(containers=[ctr("c1", 1, "running", size_rw=7, log=3),
                                      ctr("c2", 4, size_rw=11, log=5)]))
    images, containers, volumes, cache_row = du.rows
    # Images: base and app (steps 2 and 3 lie under app; 5 is only a build step)
    assert (images.total, images.active, images.size) == (2, 2, 1240)
    assert images.reclaimable == 0  # both are used
    assert (containers.total, containers.active, containers.size, containers.reclaimable) == \
        (2, 1, 18, 11)
    assert (volumes.total, volumes.size) == (0, 0)
    assert (cache_row.total, cache_row.active, cache_row.size, cache_row.reclaimable) == \
        (4, 1, 50, 50)
    assert images.size + cache_row.size == 1290  # what the layers take, once each
    shared = {u.record.image_id: u.shared for u in du.cache}
    assert shared == {sid(2): True, sid(3): True, sid(4): True, sid(5): False}
    logs = du.extra[0]
    assert (logs.total, logs.active, logs.size, logs.reclaimable) == (2, 1, 8, 5)
    per = {u.image.id: (u.size, u.shared_size, u.containers) for u in du.images}
    assert per == {sid(1): (1000, 1000, 1), sid(4): (1240, 1000, 1)}


def test_df_reclaimable_is_what_no_container_image_uses() -> None:
    du = disk_usage(built(containers=[ctr("c1", 1, "running")]))
    assert du.rows[0].reclaimable == 240  # app's own layers; base's is in use
    assert du.rows[0].active == 1


def test_df_counts_volumes_as_recorded() -> None:
    vols = [VolumeRecord("a", True, True, {}, 30), VolumeRecord("b", False, True, {}, 12)]
    du = disk_usage(built(volumes=vols, containers=[ctr("c1", 1)],
                          volume_users={"b": ["c1"]}))
    v = du.rows[2]
    assert (v.total, v.active, v.size, v.reclaimable) == (2, 1, 42, 30)


def test_container_prune_takes_what_does_not_run_and_honours_filters() -> None:
    snap = built(containers=[ctr("run", 1, "running"), ctr("restart", 1, "restarting"),
                             ctr("old", 1, created=10, size_rw=5, log=2),
                             ctr("new", 1, "created", created=500, labels={"keep": "1"}),
                             ctr("dead", 1, "dead", created=20)])
    assert [c.id for c in plan_container_prune(snap).remove] == ["old", "dead", "new"]
    plan = plan_container_prune(snap, PruneFilters(until_ns=100 * NS))
    assert [c.id for c in plan.remove] == ["old", "dead"] and plan.reclaimed == 7
    assert [c.id for c in plan_container_prune(snap, PruneFilters(labels=("keep",))).remove] \
        == ["new"]
    assert [c.id for c in plan_container_prune(snap, PruneFilters(not_labels=("keep=1",)))
            .remove] == ["old", "dead"]


def test_image_prune_dangling_removes_a_head_and_its_own_parents_only() -> None:
    plan = plan_image_prune(built())
    # step 5 goes; step 3 stays (app:1 stands on it)
    assert plan.deleted_images == (sid(5),) and plan.freed_layers == (layer(5),)
    assert plan.records == [("Deleted", sid(5)), ("Deleted", layer(5))]
    assert plan.reclaimed == 50 and plan.cache_keys == (sid(1005),)


def test_image_prune_all_untags_and_deletes_children_first() -> None:
    plan = plan_image_prune(built(), all=True)
    assert plan.records == [
        ("Deleted", sid(5)), ("Deleted", layer(5)),
        ("Untagged", "app:1"), ("Deleted", sid(4)), ("Deleted", sid(3)), ("Deleted", sid(2)),
        ("Deleted", layer(4)), ("Deleted", layer(2)),
        ("Untagged", "base:1"), ("Deleted", sid(1)), ("Deleted", layer(1))]
    assert plan.reclaimed == 1290


def test_image_prune_all_keeps_images_containers_use_with_all_their_tags() -> None:
    images = [img(1, [1], tags=("a:1", "a:2")), img(2, [2], tags=("b:1",))]
    snap = snapshot(images, {1: 10, 2: 20}, containers=[ctr("c", 1)])
    plan = plan_image_prune(snap, all=True)
    assert plan.records == [("Untagged", "b:1"), ("Deleted", sid(2)), ("Deleted", layer(2))]


def test_image_prune_filters_until_and_labels() -> None:
    images = [img(1, [1], created="2020-01-01T00:00:00Z"), img(2, [2], created="2026-01-01T00:00:00Z")]
    snap = snapshot(images, {1: 1, 2: 2})
    cutoff = parse_prune_filters({"until": ["2021-01-01T00:00:00Z"]}, ["until"])
    assert plan_image_prune(snap, cutoff).deleted_images == (sid(1),)
    labels = {sid(1): {"a": "x"}, sid(2): {}}
    plan = plan_image_prune(snap, PruneFilters(labels=("a=x",)), labels=labels.__getitem__)
    assert plan.deleted_images == (sid(1),)
    plan = plan_image_prune(snap, PruneFilters(not_labels=("a",)), labels=labels.__getitem__)
    assert plan.deleted_images == (sid(2),)


def test_builder_prune_takes_dangling_steps_and_all_forgets_the_rest() -> None:
    plan = plan_builder_prune(built())
    assert plan.images.deleted_images == (sid(5),) and plan.reclaimed == 50
    assert plan.cache_keys == (sid(1005),) and plan.forget == ()
    plan = plan_builder_prune(built(), all=True)
    assert plan.images.deleted_images == (sid(5),)
    assert set(plan.forget) == {sid(1002), sid(1003), sid(1004)}
    # recently used: kept
    assert plan_builder_prune(built(), PruneFilters(until_ns=10 * NS)).images.steps == ()


def test_builder_prune_never_takes_a_step_a_container_uses() -> None:
    plan = plan_builder_prune(built(containers=[ctr("c", 5)]))
    assert plan.images.steps == ()


def test_system_prune_chains_containers_images_and_cache() -> None:
    snap = built(containers=[ctr("c", 5, size_rw=3)])
    plan = plan_system_prune(snap)
    assert [c.id for c in plan.containers.remove] == ["c"]
    assert plan.images.deleted_images == (sid(5),)  # free once its container is gone
    assert plan.builder.images.steps == ()
    assert plan.reclaimed == 53
    everything = plan_system_prune(snap, all=True)
    assert everything.reclaimed == 1293
    with pytest.raises(InvalidArgument, match="until"):
        plan_system_prune(snap, PruneFilters(until_ns=1), volumes=True)


def test_system_prune_volumes_takes_anonymous_unused_ones() -> None:
    vols = [VolumeRecord("anon", True, True, {}, 30), VolumeRecord("named", False, True, {}, 5),
            VolumeRecord("used", True, True, {}, 7)]
    snap = built(volumes=vols, containers=[ctr("run", 1, "running")],
                 volume_users={"used": ["run"]})
    plan = plan_system_prune(snap, volumes=True)
    assert plan.volumes is not None and [v.name for v in plan.volumes.remove] == ["anon"]


@pytest.mark.parametrize("values, message", [
    ({"nope": ["1"]}, "invalid filter 'nope'"),
    ({"until": ["1h", "2h"]}, "more than one until filter"),
    ({"until": ["yesterday"]}, "invalid value for 'until' filter"),
])
def test_bad_filters(values: dict[str, list[str]], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_prune_filters(values, ["until", "label"])


def test_until_takes_durations_and_timestamps() -> None:
    f = parse_prune_filters({"until": ["1h"]}, ["until"], now=10_000)
    assert f.until_ns == (10_000 - 3600) * NS
    assert parse_prune_filters({"until": ["1700000000"]}, ["until"]).until_ns == \
        1_700_000_000 * NS
