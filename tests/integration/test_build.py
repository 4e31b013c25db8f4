"""`berth build` on the real kernel: the seed's Dockerfiles on a busybox image (the pinger,
`RUN cd` against WORKDIR, `ADD --chown=11:22`, the package.json cache example, a multi-stage
build), the cache and its explanations, .dockerignore, heredocs, stdin contexts, and bad input
leaving no image, container or mount behind."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from berth.build.files import lookup_in_layers
from helpers.cli import berth

def build(ctx: Path, *flags: str, check: bool = True) -> subprocess.CompletedProcess:
    return berth("build", "--network", "none", *flags, str(ctx), check=check)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def steps(log: str) -> dict[int, str]:
    """Step number -> "hit" or "miss", read off the classic log."""
    out: dict[int, str] = {}
    current = 0
    for line in log.splitlines():
        m = re.match(r"Step (\d+)/\d+ : ", line)
        if m:
            current = int(m.group(1))
            out[current] = "miss"
        elif line.startswith(" ---> Using cache"):
            out[current] = "hit"
    return out


@pytest.fixture
def base(image: str) -> str:
    """conftest's busybox image, `bb:test`."""
    return image


def all_images() -> set[str]:
    return set(berth("images", "-aq", "--no-trunc").stdout.split())


def test_pinger_entrypoint_and_cmd(base: str, tmp_path: Path) -> None:
    ctx = write(tmp_path / "ctx", {"Dockerfile": 'FROM bb:test\nENTRYPOINT ["ping"]\n'
                                                 'CMD ["127.0.0.1", "-c", "3"]\n'})
    r = build(ctx, "-t", "pinger")
    assert "Step 1/3 : FROM bb:test" in r.stdout and "Successfully tagged pinger:latest" \
        in r.stdout
    cfg = json.loads(berth("image", "inspect", "pinger").stdout)[0]["Config"]
    assert (cfg["Entrypoint"], cfg["Cmd"]) == (["ping"], ["127.0.0.1", "-c", "3"])
    out = berth("run", "--rm", "--network", "none", "pinger").stdout
    assert "PING 127.0.0.1" in out and "3 packets transmitted, 3 packets received" in out
    # arguments after the image replace CMD
    out = berth("run", "--rm", "--network", "none", "pinger", "-c", "1", "127.0.0.1").stdout
    assert "1 packets transmitted, 1 packets received" in out
    # --entrypoint replaces ENTRYPOINT (and clears CMD)
    out = berth("run", "--rm", "--network", "none", "--entrypoint", "/bin/echo", "pinger",
                "replaced").stdout
    assert out == "replaced\n"


def test_run_cd_is_not_workdir(base: str, tmp_path: Path) -> None:
    ctx = write(tmp_path / "ctx", {"Dockerfile": (
        "FROM bb:test\nRUN mkdir -p /app/bin\nRUN cd /app/bin\nRUN touch sample.txt\n"
        "WORKDIR /app/bin\nRUN touch sample2.txt\nWORKDIR new/deeper\nRUN pwd > /where\n")})
    build(ctx, "-t", "wd")
    out = berth("run", "--rm", "wd", "sh", "-c",
                "ls /sample.txt; ls /app/bin/sample2.txt; ls /app/bin/sample.txt; cat /where; pwd",
                check=False)
    assert "/sample.txt\n/app/bin/sample2.txt\n" in out.stdout
    assert "No such file" in out.stderr  # RUN cd did not carry over
    assert out.stdout.endswith("/app/bin/new/deeper\n/app/bin/new/deeper\n")


def test_add_chown_and_wildcards(base: str, tmp_path: Path) -> None:
    ctx = write(tmp_path / "ctx", {
        "Dockerfile": "FROM bb:test\nADD --chown=11:22 ./data/files* /app/data/\n"
                      "COPY --chown=app data/other.txt /named\nCOPY --chmod=600 data/other.txt "
                      "/moded\n",
        "data/files1.txt": "1", "data/files2.txt": "2", "data/other.txt": "o"})
    build(ctx, "-t", "owned")
    out = berth("run", "--rm", "owned", "sh", "-c",
                "stat -c '%u:%g %a %n' /app/data/* /named /moded").stdout.splitlines()
    assert out == ["11:22 644 /app/data/files1.txt", "11:22 644 /app/data/files2.txt",
                   "1000:1000 644 /named", "0:0 600 /moded"]


def test_package_json_cache_example(base: str, tmp_path: Path) -> None:
    """The seed's example: editing a source file re-runs only the last COPY and what follows;
    editing package.json re-runs the install step too."""
    ctx = write(tmp_path / "ctx", {
        "Dockerfile": ("FROM bb:test\nRUN mkdir -p /app\nWORKDIR /app\n"
                       "COPY package.json /app/\n"
                       "RUN cp package.json installed.json && echo npm-install-ran\n"
                       "COPY . /app\nCMD [\"cat\", \"/app/installed.json\"]\n"),
        "package.json": '{"name": "app", "version": "1"}\n',
        "src/app.js": "console.log(1)\n"})
    first = build(ctx, "-t", "node-app")
    assert set(steps(first.stdout).values()) == {"miss"}
    assert "\nnpm-install-ran\n" in first.stdout
    again = build(ctx, "-t", "node-app")
    assert steps(again.stdout) == {i: "hit" for i in range(2, 8)} | {1: "miss"}
    assert "\nnpm-install-ran\n" not in again.stdout
    (ctx / "src/app.js").write_text("console.log(2)\n")
    edit = build(ctx, "-t", "node-app")
    s = steps(edit.stdout)
    assert [s[i] for i in range(2, 8)] == ["hit", "hit", "hit", "hit", "miss", "miss"]
    assert "\nnpm-install-ran\n" not in edit.stdout
    assert "Cache miss: src/app.js changed" in edit.stdout  # berth says why
    (ctx / "package.json").write_text('{"name": "app", "version": "2"}\n')
    edit = build(ctx, "-t", "node-app")
    s = steps(edit.stdout)
    assert [s[i] for i in range(2, 8)] == ["hit", "hit", "miss", "miss", "miss", "miss"]
    assert "\nnpm-install-ran\n" in edit.stdout and "Cache miss: package.json changed" in edit.stdout
    assert berth("run", "--rm", "node-app").stdout == '{"name": "app", "version": "2"}\n'
    # a touched file keeps the cache (content and mode count, not the mtime)
    (ctx / "src/app.js").touch()
    assert set(steps(build(ctx, "-t", "node-app").stdout).values()) - {"miss"} == {"hit"}
    nocache = build(ctx, "--no-cache", "-t", "node-app")
    assert "Using cache" not in nocache.stdout


def test_build_arg_changes_the_cache_and_says_so(base: str, tmp_path: Path) -> None:
    ctx = write(tmp_path / "ctx", {"Dockerfile": (
        "ARG BASE=bb:test\nFROM $BASE\nARG FLAVOUR=plain\nRUN echo flavour=$FLAVOUR > /f\n"
        "ENV F2=${FLAVOUR:-x}-env\nLABEL flavour=\"$FLAVOUR\"\n")})
    build(ctx, "-t", "argy")
    assert berth("run", "--rm", "argy", "sh", "-c", "cat /f; echo $F2; echo ${FLAVOUR:-unset}"
                 ).stdout == "flavour=plain\nplain-env\nunset\n"
    r = build(ctx, "--build-arg", "FLAVOUR=spicy", "-t", "argy")
    assert "Cache miss: build arg FLAVOUR: 'plain' -> 'spicy'" in r.stdout
    assert berth("run", "--rm", "argy", "cat", "/f").stdout == "flavour=spicy\n"
    labels = json.loads(berth("image", "inspect", "argy").stdout)[0]["Config"]["Labels"]
    assert labels == {"flavour": "spicy"}
    hist = berth("history", "--no-trunc", "--format", "{{.CreatedBy}}", "argy").stdout
    assert "|1 FLAVOUR=spicy /bin/sh -c echo flavour=$FLAVOUR > /f" in hist
    r = build(ctx, "--build-arg", "UNUSED=1", "-t", "argy")
    assert "[Warning] One or more build-args [UNUSED] were not consumed" in r.stdout


def test_multi_stage_final_image_is_base_plus_one_layer(base: str, tmp_path: Path) -> None:
    ctx = write(tmp_path / "ctx", {"Dockerfile": (
        "FROM bb:test AS build\nWORKDIR /src\n"
        "RUN mkdir -p out && echo artifact > out/hello && echo junk > junk\n"
        "FROM bb:test AS unused\nRUN exit 7\n"
        "FROM bb:test\nCOPY --from=build /src/out/hello /app/hello\n"
        "CMD [\"cat\", \"/app/hello\"]\n")})
    r = build(ctx, "-t", "small")
    assert "exit 7" not in r.stdout  # the stage the target does not need was skipped
    assert berth("run", "--rm", "small").stdout == "artifact\n"
    info = json.loads(berth("image", "inspect", "small").stdout)[0]
    base_layers = json.loads(berth("image", "inspect", base).stdout)[0]["RootFS"]["Layers"]
    assert info["RootFS"]["Layers"][:-1] == base_layers
    assert len(info["RootFS"]["Layers"]) == len(base_layers) + 1
    saved = tmp_path / "small.tar"
    berth("save", "-o", str(saved), "small")
    with tarfile.open(saved) as t:
        manifest = json.load(t.extractfile("manifest.json"))  # type: ignore[arg-type]
        last = t.extractfile(manifest[0]["Layers"][-1])
        with tarfile.open(fileobj=io.BytesIO(last.read())) as layer:  # type: ignore[union-attr]
            names = sorted(m.name.rstrip("/") for m in layer.getmembers())
    assert names == ["app", "app/hello"]
    # by index too, and --target
    (ctx / "Dockerfile").write_text("FROM bb:test\nRUN echo zero > /z\nFROM bb:test AS two\n"
                                    "COPY --from=0 /z /z\nFROM bb:test\nRUN exit 9\n")
    build(ctx, "--target", "two", "-t", "two")
    assert berth("run", "--rm", "two", "cat", "/z").stdout == "zero\n"


def test_dockerignore_and_heredocs(base: str, tmp_path: Path) -> None:
    ctx = write(tmp_path / "ctx", {
        "Dockerfile": ("FROM bb:test\nCOPY . /ctx\n"
                       "RUN <<EOF\necho from heredoc > /h1\necho second line >> /h1\nEOF\n"
                       "COPY <<EOF /etc/note\nnote body\nEOF\n"
                       "RUN cat <<EOT > /h2\nx=$((1+2))\nEOT\n"),
        ".dockerignore": "*.log\nsecret/\n!secret/keep.txt\n**/tmp\nDockerfile\n",
        "a.txt": "a", "b.log": "b", "secret/pw": "pw", "secret/keep.txt": "keep",
        "deep/er/tmp": "t", "deep/er/ok": "ok"})
    build(ctx, "-t", "ign")
    listing = berth("run", "--rm", "ign", "sh", "-c",
                    "cd /ctx && find . -type f | sort; cat /h1 /etc/note /h2").stdout
    assert listing == ("./.dockerignore\n./a.txt\n./deep/er/ok\n./secret/keep.txt\n"
                       "from heredoc\nsecond line\nnote body\nx=3\n")
    (ctx / "Dockerfile").write_text("FROM bb:test\nCOPY b.log /\n")
    r = build(ctx, check=False)
    assert r.returncode == 1 and "b.log" in r.stderr and "Dockerfile:2" in r.stderr


def test_context_and_dockerfile_on_stdin(base: str, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in {"Dockerfile": b"FROM bb:test\nCOPY f /f\n", "f": b"from tar\n"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    r = berth("build", "--network", "none", "-q", "-t", "fromtar", "-", input=buf.getvalue())
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", r.stdout)
    assert berth("run", "--rm", "fromtar", "cat", "/f").stdout == "from tar\n"
    iid = tmp_path / "iid"
    r = berth("build", "--network", "none", "--iidfile", str(iid), "-t", "bare", "-",
              input=b"FROM bb:test\nENV X=1\n")
    assert iid.read_text() == json.loads(berth("image", "inspect", "bare").stdout)[0]["Id"]
    ctx = write(tmp_path / "ctx", {"x": "x"})
    r = berth("build", "--network", "none", "-f", "-", "-t", "dfstdin", str(ctx),
              input=b"FROM bb:test\nCOPY x /x\n")
    assert berth("run", "--rm", "dfstdin", "cat", "/x").stdout == "x"


def test_onbuild_triggers_run_in_the_child(base: str, tmp_path: Path) -> None:
    ctx = write(tmp_path / "ctx", {"Dockerfile": "FROM bb:test\nONBUILD RUN echo triggered > "
                                                 "/t\nONBUILD COPY f /f\n", "f": "ff"})
    build(ctx, "-t", "parent-img")
    assert json.loads(berth("image", "inspect", "parent-img").stdout)[0]["Config"][
        "OnBuild"] == ["RUN echo triggered > /t", "COPY f /f"]
    (ctx / "Dockerfile").write_text("FROM parent-img\n")
    r = build(ctx, "-t", "child-img")
    assert "# Executing 2 build triggers" in r.stdout
    assert berth("run", "--rm", "child-img", "cat", "/t", "/f").stdout == "triggered\nff"
    assert json.loads(berth("image", "inspect", "child-img").stdout)[0]["Config"][
        "OnBuild"] is None


def test_rmi_removes_the_build_steps_with_the_image(base: str, tmp_path: Path) -> None:
    before = all_images()
    ctx = write(tmp_path / "ctx", {"Dockerfile": "FROM bb:test\nRUN echo 1 > /1\nENV A=1\n"
                                                 "RUN echo 2 > /2\n"})
    build(ctx, "-t", "steps")
    assert len(all_images() - before) == 3  # one image per step, untagged ones hidden:
    assert berth("images", "-q").stdout.split().__len__() == 2
    out = berth("rmi", "steps").stdout
    assert out.count("Deleted: sha256:") >= 3
    assert all_images() == before


@pytest.mark.parametrize("dockerfile, line, message", [
    ("FROM bb:test\nRUN true\nFOO bar\n", 3, "unknown instruction: FOO"),
    ("FROM bb:test\nCOPY missing.txt /x\n", 2, "missing.txt"),
    ("FROM bb:test\nCOPY --chown=nosuchuser f /f\n", 2, "nosuchuser"),
    ("FROM bb:test\nRUN <<EOF\necho never ends\n", 2, "heredoc"),
    ("FROM bb:test\nCOPY --from=nowhere /a /b\n", 2, "nowhere"),
    ("FROM bb:test\nRUN echo ran && exit 3\n", 0, "returned a non-zero code: 3"),
    ("FROM no-such-image:1\n", 1, "no-such-image"),
    ("FROM bb:test\nCOPY f Dockerfile /x\n", 2, "must be a directory and end with a /"),
    ("FROM bb:test\nRUN --mount=type=cache,target=/c true\n", 2, "not supported by berth"),
    ("FROM bb:test AS one\nFROM bb:test AS One\n", 2, "duplicate name"),
])
def test_bad_input_leaves_nothing(base: str, tmp_path: Path, dockerfile: str, line: int,
                                  message: str) -> None:
    ctx = write(tmp_path / "ctx", {"Dockerfile": dockerfile, "f": "f"})
    visible = berth("images", "-q", "--no-trunc").stdout
    r = build(ctx, "-t", "bad", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert message in r.stderr
    if line:
        assert f"Dockerfile:{line}" in r.stderr
    assert berth("images", "-q", "bad").stdout == ""
    assert berth("ps", "-aq").stdout == ""  # no intermediate container left
    assert berth("images", "-q", "--no-trunc").stdout == visible  # no new image shown
    assert berth("system", "check").returncode == 0


def test_lookup_in_layers_honours_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    """What COPY sees of the image: a whiteout hides, an opaque directory hides below."""
    low, top = tmp_path / "low", tmp_path / "top"
    (low / "etc/conf").mkdir(parents=True)
    (low / "etc/conf/a").write_text("a")
    (low / "gone").write_text("g")
    (top / "etc/conf").mkdir(parents=True)
    os.mknod(top / "gone", 0o600 | 0o020000, os.makedev(0, 0))
    layers = [str(top), str(low)]
    assert lookup_in_layers(layers, "etc/conf/a") is not None
    assert lookup_in_layers(layers, "gone") is None
    os.setxattr(top / "etc/conf", "trusted.overlay.opaque", b"y")
    assert lookup_in_layers(layers, "etc/conf/a") is None
    assert lookup_in_layers(layers, "etc/conf") is not None


def test_add_unpacks_local_archives_and_fetches_urls(base: str, tmp_path: Path) -> None:
    import bz2
    import hashlib
    import http.server
    import lzma
    import threading
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w") as t:
        for name, data in {"inner/a.txt": b"A", "b.txt": b"B"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    raw = payload.getvalue()
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "plain.tar").write_bytes(raw)
    (ctx / "z.tar.bz2").write_bytes(bz2.compress(raw))
    (ctx / "x.tar.xz").write_bytes(lzma.compress(raw))
    body = b"downloaded body\n"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/files/data.txt"
    try:
        good = hashlib.sha256(body).hexdigest()
        (ctx / "Dockerfile").write_text(
            f"FROM bb:test\nADD plain.tar /p/\nADD z.tar.bz2 /z\nADD x.tar.xz /x/\n"
            f"ADD --checksum=sha256:{good} {url} /dl/\nCOPY plain.tar /copied/\n")
        build(ctx, "-t", "added")
        out = berth("run", "--rm", "added", "sh", "-c",
                    "cat /p/inner/a.txt /z/b.txt /x/inner/a.txt /dl/data.txt; "
                    "stat -c %a /dl/data.txt; ls /copied").stdout
        assert out == "ABAdownloaded body\n600\nplain.tar\n"
        (ctx / "Dockerfile").write_text(f"FROM bb:test\nADD --checksum=sha256:{'0' * 64} "
                                        f"{url} /dl/\n")
        r = build(ctx, check=False)
        assert r.returncode == 1 and "digest mismatch" in r.stderr
    finally:
        server.shutdown()
        server.server_close()


def test_cache_from_an_image_loaded_elsewhere(base: str, tmp_path: Path) -> None:
    """--cache-from: a saved and re-loaded image (no local build cache, no parents) still
    serves as cache, step by step through its history."""
    ctx = write(tmp_path / "ctx", {"Dockerfile": "FROM bb:test\nRUN echo once > /once\n"
                                                 "ENV DONE=1\n"})
    build(ctx, "-t", "cached:v1")
    saved = tmp_path / "cached.tar"
    berth("save", "-o", str(saved), "cached:v1")
    berth("rmi", "cached:v1")
    berth("load", "-i", str(saved))
    plain = build(ctx, "-t", "cached:v2")
    assert "Running in" in plain.stdout  # no parents: the local cache is gone with rmi
    berth("rmi", "cached:v2")
    r = build(ctx, "--cache-from", "cached:v1", "-t", "cached:v3")
    assert "Running in" not in r.stdout and "Using cache (from --cache-from)" in r.stdout
    layers = [json.loads(berth("image", "inspect", t).stdout)[0]["RootFS"]["Layers"]
              for t in ("cached:v1", "cached:v3")]
    assert layers[0] == layers[1]


def test_quoted_words_and_script_heredocs(base: str, tmp_path: Path) -> None:
    """A quoted argument stays one word after expansion; a `RUN <<EOF` script with a #! line
    runs by its interpreter; a COPY heredoc with an unquoted delimiter expands variables."""
    ctx = write(tmp_path / "ctx", {"Dockerfile": (
        'FROM bb:test\nENV NAME="two words"\nWORKDIR "/dir with $NAME"\n'
        "RUN <<EOF\n#!/bin/sh -e\necho script:$0 > /script.out\nEOF\n"
        "COPY <<EOF /expanded\nname=$NAME\nEOF\n"
        "COPY <<'EOF' /literal\nname=$NAME\nEOF\n")})
    build(ctx, "-t", "words")
    out = berth("run", "--rm", "words", "sh", "-c",
                "pwd; cat /script.out /expanded /literal").stdout
    assert out == ("/dir with two words\nscript:/dev/pipes/EOF\nname=two words\n"
                   "name=$NAME\n")


def test_metadata_instructions_reach_the_config_as_docker_writes_it(base: str,
                                                                   tmp_path: Path) -> None:
    ctx = write(tmp_path / "ctx", {"Dockerfile": (
        "FROM bb:test\nMAINTAINER someone <a@b.c>\nLABEL a=1 \"b c\"=\"d e\"\n"
        "EXPOSE 80 53/udp 8000-8001\nVOLUME [\"/data\", \"/logs\"]\nUSER app:app\n"
        "STOPSIGNAL SIGINT\nHEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD true\n"
        "SHELL [\"/bin/sh\", \"-ec\"]\nCMD echo $0\nENTRYPOINT [\"/bin/echo\"]\n"
        "ONBUILD RUN echo later\n")})
    build(ctx, "-t", "meta")
    info = json.loads(berth("image", "inspect", "meta").stdout)[0]
    cfg = info["Config"]
    assert info["Author"] == "someone <a@b.c>"
    assert cfg["Labels"] == {"a": "1", "b c": "d e"}
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}
    assert cfg["Volumes"] == {"/data": {}, "/logs": {}}
    assert (cfg["User"], cfg["StopSignal"]) == ("app:app", "SIGINT")
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000,
                                  "Timeout": 2_000_000_000, "Retries": 4}
    assert cfg["Shell"] == ["/bin/sh", "-ec"]
    # CMD in shell form uses SHELL; an ENTRYPOINT set later in the same stage keeps that CMD
    assert cfg["Cmd"] == ["/bin/sh", "-ec", "echo $0"] and cfg["Entrypoint"] == ["/bin/echo"]
    assert cfg["OnBuild"] == ["RUN echo later"]
    hist = json.loads(berth("image", "inspect", "--format", "{{json .}}", "meta").stdout)
    assert hist["Id"] == info["Id"]
    rows = berth("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Size}}", "meta"
                 ).stdout.splitlines()
    assert rows[0] == '/bin/sh -c #(nop)  ONBUILD RUN echo later|0B'
    assert '/bin/sh -c #(nop)  EXPOSE 53/udp 80/tcp 8000/tcp 8001/tcp|0B' in rows
