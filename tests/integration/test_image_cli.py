"""`berth image …` as a user runs it: the fixtures loaded through the CLI, docker's tables and
templates, tag/rmi records, import with --change from stdin, save to stdout and load from
stdin, and the events the store keeps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from berth.store.db import Database

TYPE_CHECKING = False
if TYPE_CHECKING:
    from conftest import BerthEnv

FIXTURES = Path(os.environ.get("BERTH_FIXTURES", "/work/shared/fixtures"))
MULTI = FIXTURES / "docker20-multi.tar"
pytestmark = pytest.mark.skipif(not MULTI.is_file(), reason=f"no fixtures in {FIXTURES}")


def berth(*args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "berth.cli.main", *args], capture_output=True,
                       input=input, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr.decode()
    return r


def out(*args: str) -> str:
    return berth(*args).stdout.decode()


@pytest.fixture
def loaded(berth_env: BerthEnv) -> None:
    assert out("load", "-i", str(MULTI)) == \
        "Loaded image: busybox:anchor\nLoaded image: fixture/layers:1\n"


def test_images_table_and_quiet(loaded) -> None:
    lines = out("images").splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert lines[0].index("TAG") == lines[1].index(lines[1].split()[1])  # aligned columns
    rows = {tuple(line.split()[:3]) for line in lines[1:]}
    assert rows == {("fixture/layers", "1", "1bede122178e"), ("busybox", "anchor",
                                                              "c2c3d4739437")}
    assert sorted(out("images", "-q").split()) == ["1bede122178e", "c2c3d4739437"]
    assert out("images", "--no-trunc", "-q", "busybox").strip() == \
        "sha256:c2c3d47394374b32fe31cc141d23763c4f17f66f3feb48b48dcfbffe6ecd3cc8"
    assert out("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "-f",
               "label=org.example.fixture=layers") == "fixture/layers:1\n"
    assert out("images", "-f", "reference=busy*") .count("busybox") == 1


def test_tag_rmi_and_dangling(loaded) -> None:
    berth("tag", "busybox:anchor", "mine:1")
    assert "mine" in out("images")
    assert out("rmi", "mine:1") == "Untagged: mine:1\n"
    # loading another image under an existing tag leaves the old one dangling
    r = out("load", "-i", str(FIXTURES / "skopeo-oci-layers.tar"))
    assert r.startswith("The image fixture/layers:1 already exists, renaming the old one with "
                        "ID sha256:1bede122178e")
    dangling = out("images", "-f", "dangling=true", "--format", "{{.ID}} {{.Repository}}")
    assert dangling == "1bede122178e <none>\n"
    r = out("rmi", "1bede122178e")
    assert r.splitlines()[0] == \
        "Deleted: sha256:1bede122178eeba4df484a82ccb514bdc3958d0b33b28416300819e8efc47586"
    r = berth("rmi", "c2c3d4739437", "busybox:nope", check=False)
    assert r.returncode == 1 and b"No such image: busybox:nope" in r.stderr


def test_history_and_inspect(loaded) -> None:
    lines = out("history", "fixture/layers:1").splitlines()
    assert lines[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert len(lines) == 1 + 17
    assert lines[1].startswith("1bede122178e   ") and all(
        line.startswith("<missing>") for line in lines[2:])
    assert "Imported from -" in lines[-1]
    full = out("history", "--no-trunc", "--format", "{{.CreatedBy}}", "fixture/layers:1")
    assert 'ENTRYPOINT ["/opt/app/bin/hello"]' in full
    doc = json.loads(out("image", "inspect", "fixture/layers:1"))
    assert doc[0]["Id"].startswith("sha256:1bede122178e")
    assert doc[0]["RepoTags"] == ["fixture/layers:1"]
    assert doc[0]["Config"]["User"] == "1000:1000"
    assert out("inspect", "--format", "{{.Os}}/{{.Architecture}} {{len .RootFS.Layers}}",
               "busybox:anchor") == "linux/amd64 1\n"


def test_import_stdin_save_stdout_load_stdin(berth_env: BerthEnv) -> None:
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        ti = tarfile.TarInfo("hello.txt")
        ti.size = 3
        tar.addfile(ti, io.BytesIO(b"hi\n"))
    image_id = berth("import", "-c", "ENTRYPOINT [\"/hello\"]", "-m", "made here", "-",
                     "imp:1", input=buf.getvalue()).stdout.decode().strip()
    assert image_id.startswith("sha256:")
    assert out("history", "--format", "{{.Comment}}", "imp:1") == "made here\n"
    saved = berth("save", "imp:1").stdout
    assert out("save", "-o", str(berth_env.tmp / "imp.tar"), "imp:1") == ""
    assert (berth_env.tmp / "imp.tar").read_bytes() == saved
    berth("rmi", "imp:1")
    assert berth("load", input=saved).stdout == b"Loaded image: imp:1\n"
    assert out("inspect", "--format", "{{.Id}}", "imp:1").strip() == image_id
    db = Database(berth_env.root)
    try:
        actions = [(e.type, e.action) for e in db.events()]
    finally:
        db.close()
    for want in (("image", "import"), ("image", "tag"), ("image", "save"), ("image", "untag"),
                 ("image", "delete"), ("image", "load")):
        assert want in actions
