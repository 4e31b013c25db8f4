"""image/archive.py on real files: the fixtures docker, podman and skopeo wrote load to the ids,
layers, history, config and root filesystem their sidecars record; berth's save is docker 25's
layout, deterministic, schema-valid and loads back to the same id; hostile archives are refused
with nothing left visible or written outside the store."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import uuid
from pathlib import Path

import pytest

from berth.errors import ImageFormatError, InvalidArgument
from berth.image import archive
from berth.image.images import ImageStore, NoSuchImage
from berth.image.unpack import prepare_rootfs
from berth.store import mount as mnt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from conftest import BerthEnv

FIXTURES = Path(os.environ.get("BERTH_FIXTURES", "/work/shared/fixtures"))
ARCHIVES = sorted(p.name for p in FIXTURES.glob("*.tar")) if FIXTURES.is_dir() else []

needs_fixtures = pytest.mark.skipif(not ARCHIVES, reason=f"no fixtures in {FIXTURES}")


@pytest.fixture
def store(berth_env: BerthEnv):
    s = ImageStore(berth_env.root)
    yield s
    s.close()


def expected(name: str) -> dict:
    return json.loads((FIXTURES / name.replace(".tar", ".expected.json")).read_text())


def full_id(v: str) -> str:
    return v if v.startswith("sha256:") else "sha256:" + v


# --- the fixtures ----------------------------------------------------------------------------

def listing(root: Path) -> dict[str, dict]:
    """The root filesystem in the sidecars' form (hardlink groups by their smallest path)."""
    out: dict[str, dict] = {}
    inodes: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            e: dict = {"mode": f"{stat.S_IMODE(st.st_mode):04o}", "uid": st.st_uid,
                       "gid": st.st_gid}
            if stat.S_ISDIR(st.st_mode):
                e["type"] = "dir"
            elif stat.S_ISLNK(st.st_mode):
                e["type"] = "symlink"
                e["linkname"] = os.readlink(p)
            elif stat.S_ISFIFO(st.st_mode):
                e["type"] = "fifo"
            elif stat.S_ISCHR(st.st_mode):
                e["type"] = "char"
            elif stat.S_ISBLK(st.st_mode):
                e["type"] = "block"
            else:
                e["type"] = "file"
                e["size"] = st.st_size
                e["sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()
                if st.st_nlink > 1:
                    inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            xattrs = {}
            if not stat.S_ISLNK(st.st_mode):
                for x in os.listxattr(p, follow_symlinks=False):
                    if x.startswith(("security.", "user.")) and not x.startswith(
                            "security.selinux"):
                        xattrs[x] = os.getxattr(p, x, follow_symlinks=False).hex()
            if xattrs:
                e["xattrs"] = xattrs
            out[rel] = e
    for group in inodes.values():
        if len(group) > 1:
            first = min(group)
            for rel in group:
                out[rel]["hardlink_group"] = first
    return out


def normalise(entries: dict[str, dict]) -> dict[str, dict]:
    keep = ("type", "mode", "uid", "gid", "size", "sha256", "linkname", "hardlink_group",
            "xattrs")
    return {k: {f: v[f] for f in keep if f in v} for k, v in entries.items() if k != "."}


@needs_fixtures
@pytest.mark.parametrize("name", ARCHIVES)
def test_fixture_loads_as_the_real_tools_recorded(store: ImageStore, name: str) -> None:
    exp = expected(name)
    result = archive.load(store, FIXTURES / name)
    assert len(result.images) == len(exp["images"])
    for image_id, want in zip(result.images, exp["images"]):
        assert image_id == full_id(want["image_id"])
        img = store.get(image_id)
        assert list(img.config.diff_ids) == want["diff_ids"]
        assert img.config.architecture == want["architecture"] and img.config.os == want["os"]
        assert [{"created_by": h.created_by, "empty_layer": h.empty_layer}
                for h in img.config.history] == \
               [{"created_by": h["created_by"], "empty_layer": h["empty_layer"]}
                for h in want["history"]]
        doc = img.config.doc["config"] or {}
        for key, value in want["config"].items():
            assert doc.get(key) == value, key
        if want.get("repo_tags"):
            assert sorted(img.repo_tags) == sorted(want["repo_tags"])
    assert not [p for p in os.listdir(store.layers_dir) if p.startswith(".ingest")]


@needs_fixtures
@pytest.mark.parametrize("name", ARCHIVES)
def test_fixture_rootfs_equals_the_sidecar_listing(store: ImageStore, name: str) -> None:
    exp = expected(name)
    archive.load(store, FIXTURES / name)
    for n, want in enumerate(exp["images"]):
        mounts = prepare_rootfs(store, full_id(want["image_id"]), f"fx{n}")
        [m] = mounts
        mnt.mount_all(mounts)
        try:
            got = normalise(listing(Path(m.target)))
        finally:
            mnt.unmount(m.target)
        excluded = set(want["rootfs_engine_added_paths_excluded"])
        wanted = {k: v for k, v in normalise(want["rootfs"]).items() if k not in excluded}
        got = {k: v for k, v in got.items() if k not in excluded}
        assert sorted(got) == sorted(wanted)
        diffs = {k: (got[k], wanted[k]) for k in wanted if got[k] != wanted[k]}
        assert diffs == {}


# --- save ------------------------------------------------------------------------------------

def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else b"")  # type: ignore[union-attr]
                for m in tar}


@needs_fixtures
def test_save_is_docker25_layout_deterministic_and_round_trips(
        store: ImageStore, berth_env: BerthEnv) -> None:
    archive.load(store, FIXTURES / "docker20-multi.tar")
    first, second = io.BytesIO(), io.BytesIO()
    ids = archive.save(store, ["fixture/layers:1", "busybox:anchor"], first)
    archive.save(store, ["fixture/layers:1", "busybox:anchor"], second)
    assert first.getvalue() == second.getvalue()
    files = members(first.getvalue())
    assert {"index.json", "manifest.json", "oci-layout", "repositories"} <= set(files)
    manifest = json.loads(files["manifest.json"])
    assert [m["RepoTags"] for m in manifest] == [["fixture/layers:1"], ["busybox:anchor"]]
    index = json.loads(files["index.json"])
    names = [d["annotations"]["io.containerd.image.name"] for d in index["manifests"]]
    assert names == ["docker.io/fixture/layers:1", "docker.io/library/busybox:anchor"]
    for d in index["manifests"]:
        blob = files[f"blobs/sha256/{d['digest'].split(':')[1]}"]
        assert hashlib.sha256(blob).hexdigest() == d["digest"].split(":")[1]
        assert len(blob) == d["size"]
    for name, data in files.items():  # every blob is named by its digest
        if name.startswith("blobs/sha256/") and data:
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    # into an empty root: the same ids, tags and layers
    other = ImageStore(berth_env.root / "other")
    try:
        again = archive.load(other, io.BytesIO(first.getvalue()))
        assert again.images == ids
        assert other.get("busybox:anchor").id == ids[1]
        assert other.get("fixture/layers:1").config.diff_ids == store.get(ids[0]).config.diff_ids
    finally:
        other.close()


@needs_fixtures
def test_saved_documents_validate_against_the_oci_schemas(store: ImageStore) -> None:
    from helpers.schemas import validator
    archive.load(store, FIXTURES / "docker20-layers.tar")
    buf = io.BytesIO()
    archive.save(store, ["fixture/layers:1"], buf)
    files = members(buf.getvalue())

    def check(doc: object, schema: str) -> None:
        validator(schema).validate(doc)

    index = json.loads(files["index.json"])
    check(index, "image-index-schema.json")
    check(json.loads(files["oci-layout"]), "image-layout-schema.json")
    for d in index["manifests"]:
        manifest = json.loads(files[f"blobs/sha256/{d['digest'].split(':')[1]}"])
        check(manifest, "image-manifest-schema.json")
        config = json.loads(files[f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"])
        check(config, "config-schema.json")


def test_save_to_file_writes_beside_and_renames(store: ImageStore, berth_env: BerthEnv) -> None:
    tar = _layer([("etc/x", b"x")])
    _load_one(store, [tar], "app:1")
    outdir = berth_env.tmp / "out"
    outdir.mkdir()
    out = outdir / "out.tar"
    archive.save_to_file(store, ["app:1"], out)
    assert "manifest.json" in members(out.read_bytes())
    assert sorted(os.listdir(outdir)) == ["out.tar"]
    with pytest.raises(NoSuchImage):
        archive.save_to_file(store, ["nope:1"], outdir / "bad.tar")
    assert sorted(os.listdir(outdir)) == ["out.tar"]
    with pytest.raises(InvalidArgument):
        archive.save_to_file(store, ["app:1"], outdir / "no/such/dir.tar")


def test_save_by_repository_takes_every_tag_and_by_id_none(store: ImageStore) -> None:
    img = _load_one(store, [_layer([("a", b"1")])], "app:1")
    store.tag("app:1", "app:2")
    buf = io.BytesIO()
    archive.save(store, ["app"], buf)
    assert json.loads(members(buf.getvalue())["manifest.json"])[0]["RepoTags"] == \
        ["app:1", "app:2"]
    buf = io.BytesIO()
    archive.save(store, [img[:19]], buf)
    assert json.loads(members(buf.getvalue())["manifest.json"])[0]["RepoTags"] is None


# --- import ----------------------------------------------------------------------------------

def test_import_with_changes_and_compression(store: ImageStore, berth_env: BerthEnv) -> None:
    import gzip
    raw = _layer([("bin/tool", b"#!/bin/sh\n"), ("etc/passwd", b"root:x:0:0::/:/bin/sh\n")])
    src = berth_env.tmp / "rootfs.tar.gz"
    src.write_bytes(gzip.compress(raw))
    image_id = archive.import_rootfs(
        store, src, reference="imported:1",
        changes=['CMD ["/bin/tool"]', "ENV A=1 B='two words'", "WORKDIR /srv",
                 "EXPOSE 8080", "USER nobody", "LABEL k=v"])
    img = store.get("imported:1")
    assert img.id == image_id
    assert img.config.diff_ids == ("sha256:" + hashlib.sha256(raw).hexdigest(),)
    c = img.config.doc["config"]
    assert c["Cmd"] == ["/bin/tool"] and c["Env"] == ["A=1", "B=two words"]
    assert c["WorkingDir"] == "/srv" and c["ExposedPorts"] == {"8080/tcp": {}}
    assert c["User"] == "nobody" and c["Labels"] == {"k": "v"}
    assert img.config.history[0].comment == "Imported from -"
    assert (Path(store.layer_dirs(img)[0]) / "bin/tool").read_bytes() == b"#!/bin/sh\n"


def test_import_of_a_non_tar_creates_nothing(store: ImageStore, berth_env: BerthEnv) -> None:
    src = berth_env.tmp / "notes.txt"
    src.write_bytes(b"this is not a tar archive\n" * 40)
    with pytest.raises(ImageFormatError):
        archive.import_rootfs(store, src, reference="bad:1")
    assert store.list(all=True) == []
    assert _store_leftovers(store) == []


# --- hostile archives ------------------------------------------------------------------------

def _file(name: str, data: bytes = b"pwned") -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = 1_600_000_000
    return ti, data


def _layer(entries: list[tuple[str, bytes]],
           extra: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]] = ()) -> bytes:
    """A layer tar of files, then `extra` entries (links, or (TarInfo, data) pairs)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            ti, data = _file(name, data)
            tar.addfile(ti, io.BytesIO(data))
        for e in extra:
            if isinstance(e, tuple):
                tar.addfile(e[0], io.BytesIO(e[1]))
            else:
                tar.addfile(e)
    return buf.getvalue()


def _config(tars: list[bytes]) -> bytes:
    doc = {"architecture": "amd64", "os": "linux", "config": {},
           "rootfs": {"type": "layers",
                      "diff_ids": ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars]},
           "history": [{"created_by": f"layer {i}"} for i in range(len(tars))]}
    return json.dumps(doc, sort_keys=True).encode()


def _docker_archive(tars: list[bytes], tag: str = "evil:1", *, config: bytes | None = None,
                    manifest: list | None = None, extra: list[tuple[tarfile.TarInfo, bytes]] = ()
                    ) -> bytes:
    config = config if config is not None else _config(tars)
    chex = hashlib.sha256(config).hexdigest()
    layers = [f"l{i}/layer.tar" for i in range(len(tars))]
    if manifest is None:
        manifest = [{"Config": f"{chex}.json", "RepoTags": [tag], "Layers": layers}]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def put(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
        put(f"{chex}.json", config)
        for name, data in zip(layers, tars):
            put(name, data)
        for ti, data in extra:
            tar.addfile(ti, io.BytesIO(data) if data else None)
        put("manifest.json", json.dumps(manifest).encode())
    return buf.getvalue()


def _load_one(store: ImageStore, tars: list[bytes], tag: str) -> str:
    return archive.load(store, io.BytesIO(_docker_archive(tars, tag))).images[0]


def _store_leftovers(store: ImageStore) -> list[str]:
    """Unpacked layers or ingest files that no image explains."""
    known = {Path(p).name for i in store.list(all=True) for p in store.layer_dirs(i)}
    out = []
    if store.layers_dir.is_dir():
        out += [n for n in os.listdir(store.layers_dir) if n not in known and n != ".lock"]
    return out


def _hostile_archives(canary: str) -> dict[str, bytes]:
    good = _layer([("etc/ok", b"ok")])
    sym = tarfile.TarInfo("a")
    sym.type, sym.linkname = tarfile.SYMTYPE, "/tmp"
    hard = tarfile.TarInfo("shadow")
    hard.type, hard.linkname = tarfile.LNKTYPE, "/etc/shadow"
    link_out = tarfile.TarInfo("l0/layer.tar")
    link_out.type, link_out.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
    cfg = _config([good])
    wrong_name = json.dumps([{"Config": "blobs/sha256/" + "0" * 64, "RepoTags": ["evil:1"],
                              "Layers": ["l0/layer.tar"]}]).encode()
    truncated = _docker_archive([_layer([("big", b"x" * 100_000)])])
    oversized = bytearray(_docker_archive([good]))
    # the first member's header claims 8 GiB: its data runs past the end of the archive
    hdr = tarfile.TarInfo("huge")
    hdr.size = 8 << 30
    oversized = bytes(hdr.tobuf(tarfile.GNU_FORMAT)) + bytes(oversized)
    return {
        "layer-dotdot": _docker_archive([_layer([(f"../../{canary}", b"pwned")])]),
        "layer-absolute": _docker_archive([_layer([(f"/tmp/{canary}", b"pwned")])]),
        "layer-symlink-then-write": _docker_archive([_layer([], [sym, _file(f"a/{canary}")])]),
        "layer-hardlink-to-host": _docker_archive([_layer([], [hard])]),
        "member-symlink-out": _docker_archive(
            [good], manifest=[{"Config": f"{hashlib.sha256(cfg).hexdigest()}.json",
                               "RepoTags": ["evil:1"], "Layers": ["x/layer.tar"]}],
            extra=[(link_out, b"")]),
        "manifest-dotdot": _docker_archive(
            [good], manifest=[{"Config": "../../etc/passwd", "RepoTags": ["evil:1"],
                               "Layers": ["l0/layer.tar"]}]),
        "config-digest-mismatch": _with_member(
            _docker_archive([good]), "blobs/sha256/" + "0" * 64, cfg, wrong_name),
        "diff-id-mismatch": _docker_archive([good], config=_config([_layer([("o", b"t")])])),
        "truncated": truncated[:len(truncated) // 2],
        "oversized-header": oversized,
        "not-a-tar": b"hello, this is text\n" * 100,
        "empty": b"",
    }


def _with_member(data: bytes, name: str, content: bytes, manifest: bytes) -> bytes:
    src = tarfile.open(fileobj=io.BytesIO(data))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as out:
        for m in src:
            if m.name == "manifest.json":
                continue
            out.addfile(m, src.extractfile(m) if m.isfile() else None)
        for n, c in ((name, content), ("manifest.json", manifest)):
            ti = tarfile.TarInfo(n)
            ti.size = len(c)
            out.addfile(ti, io.BytesIO(c))
    return buf.getvalue()


HOSTILE = sorted(_hostile_archives("x"))


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_archives_are_refused_and_contained(
        store: ImageStore, berth_env: BerthEnv, case: str) -> None:
    canary = f"berth-test-{uuid.uuid4().hex}"
    data = _hostile_archives(canary)[case]
    outside = [Path("/tmp") / canary, berth_env.tmp / canary, Path("/") / canary,
               berth_env.root / canary, berth_env.root.parent / canary]
    shadow_links = os.stat("/etc/shadow").st_nlink
    try:
        with pytest.raises(ImageFormatError) as exc:
            archive.load(store, io.BytesIO(data))
        assert str(exc.value)
        assert store.list(all=True) == []
        with pytest.raises(NoSuchImage):
            store.get("evil:1")
        assert _store_leftovers(store) == []
        for p in outside:
            assert not os.path.lexists(p), f"{case} wrote {p}"
        assert os.stat("/etc/shadow").st_nlink == shadow_links
        store.gc()
        assert list(store.blobs.walk()) == []
    finally:
        for p in outside:
            if os.path.lexists(p) and not p.is_dir():
                p.unlink()


def test_load_keeps_layers_packed_until_first_use(store: ImageStore) -> None:
    """`load` stores each new layer as its verified blob, with the size its directory will
    have; the first user (a container, a build, `layer_dirs`) unpacks it. `system check` is
    clean in both states, and an eager `unpack=True` load unpacks at once."""
    from berth.image import fsck
    payload = b"x" * 5000
    hard = tarfile.TarInfo("bin/again")
    hard.type, hard.linkname = tarfile.LNKTYPE, "bin/tool"
    link = tarfile.TarInfo("bin/link")
    link.type, link.linkname = tarfile.SYMTYPE, "tool"
    tars = [_layer([("bin/tool", payload), ("etc/conf", b"abc")], [hard, link]),
            _layer([("etc/conf", b"changed!")])]
    image_id = _load_one(store, tars, "lazy:1")
    chains = store.get(image_id).layers
    assert not any(store.layer_path(c).exists() for c in chains)  # nothing unpacked yet
    assert store.db.read("SELECT COUNT(*) FROM layers WHERE unpacked = 0")[0][0] == 2
    # sizes are known before the unpack, and equal the unpacked figures
    assert store.layer_sizes(image_id) == [5000 + 3 + 4, 8]
    assert not fsck.check(store).problems
    dirs = store.layer_dirs(image_id)  # the first use
    assert all(Path(d).is_dir() for d in dirs)
    assert (Path(dirs[0]) / "bin/tool").read_bytes() == payload
    assert os.stat(Path(dirs[0]) / "bin/again").st_ino == os.stat(Path(dirs[0]) / "bin/tool").st_ino
    assert store.db.read("SELECT COUNT(*) FROM layers WHERE unpacked = 0")[0][0] == 0
    assert store.layer_sizes(image_id) == [5007, 8]
    assert not fsck.check(store).problems
    other = archive.load(store, io.BytesIO(_docker_archive(
        [_layer([("eager", b"now")])], "eager:1")), unpack=True).images[0]
    assert all(Path(d).is_dir() for d in [str(store.layer_path(c))
                                          for c in store.get(other).layers])
