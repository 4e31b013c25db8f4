"""publish-http: HTTP requests per second through a published port (loopback only).

busybox `httpd -f -p 80` in a container serves a 10-byte file; a client in this process sends
GET requests from 10 threads, each on a fresh connection (busybox httpd closes every one), to:

    berth -p (DNAT)         `berth run --network bridge -p 127.0.0.1:PORT:80`: 127.0.0.1:PORT,
                            through berth's nftables DNAT (engine/ports.py)
    berth container IP      a second such container's own address, port 80 (routed to the
                            bridge, no NAT): what the DNAT costs on top
    podman                  the reference: `podman run --network host --runtime runc` of the
                            same image, httpd on 127.0.0.1:PORT, no NAT at all (full mode)
    podman -p (netavark)    `podman run --network bridge -p 127.0.0.1:PORT:80`, only with
                            BENCH_PODMAN_PUBLISH=1: netavark sets net.ipv4.ip_forward=1 and adds
                            masquerade rules, which the machines this project runs on forbid.
                            Where it is allowed, the scenario saves `iptables-save`, `nft list
                            ruleset` and ip_forward first, and restores and compares them after.

A sample is the wall time of one batch of requests (2,000; quick: 500) per tool, the tools
interleaved batch by batch; the note gives requests per second at the median. Quick mode (CI)
runs berth alone. Why 10 clients and not 50: busybox httpd listens with a backlog of 9, so 50
clients as fast as this one overflow it and the figures measure the kernel's 1 s SYN
retransmission, for every tool alike (measured: 1,000 requests in 0.32 s with 10 clients, 2.1 s
with 50); the integration test's 20,000 requests over 50 clients check correctness instead.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from helpers.rootfs import make_rootfs, make_rootfs_tar

from . import Context, Measurement, scenario
from .image_save_load import _Podman

IMAGE = "bench/busybox:1"
BERTH = "/opt/berth-venv/bin/berth"
WORKERS = 10  # see the docstring
REQUEST = b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n"
HTTPD = "mkdir -p /www && echo hello-web > /www/index.html && exec httpd -f -p {port} -h /www"


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def _one(addr: tuple[str, int]) -> bool:
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(REQUEST)
        reply = b""
        while not reply.endswith(b"hello-web\n"):  # the body; busybox's own close comes
            data = s.recv(4096)                   # later (it drains our side first)
            if not data:
                break
            reply += data
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply[:16] and \
        reply.endswith(b"hello-web\n")


def batch(addr: tuple[str, int], total: int, workers: int = WORKERS) -> float:
    """Milliseconds for `total` requests over `workers` threads; raises if one fails."""
    failures: list[str] = []
    per = [total // workers + (1 if i < total % workers else 0) for i in range(workers)]

    def client(count: int) -> None:
        for _ in range(count):
            try:
                if not _one(addr):
                    failures.append("bad reply")
            except OSError as e:
                failures.append(repr(e))
    threads = [threading.Thread(target=client, args=(c,)) for c in per]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ms = (time.perf_counter() - t0) * 1000
    if failures:
        raise RuntimeError(f"{len(failures)} of {total} requests failed: {failures[0]}")
    return ms


def _wait_up(addr: tuple[str, int]) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            if _one(addr):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing answers on {addr[0]}:{addr[1]}")
        time.sleep(0.1)


def _snapshot() -> dict[str, str]:
    """What podman's netavark may change: iptables (all tables), nftables, ip_forward."""
    out = {}
    for name, argv in (("iptables", ["iptables-save"]), ("nft", ["nft", "list", "ruleset"])):
        exe = shutil.which(argv[0])
        r = subprocess.run([exe, *argv[1:]], capture_output=True, text=True) if exe else None
        out[name] = r.stdout if r and r.returncode == 0 else ""
    out["ip_forward"] = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    return out


def _comparable(snap: dict[str, str]) -> dict[str, str]:
    """Without comments and counters, and without berth's own table (another berth may be
    running containers meanwhile)."""
    import re
    ipt = "\n".join(line for line in snap["iptables"].splitlines()
                    if not line.startswith("#"))
    ipt = re.sub(r"\[\d+:\d+\]", "", ipt)
    nft = re.sub(r"table ip berth \{.*?\n\}\n", "", snap["nft"], flags=re.S)
    nft = re.sub(r"counter packets \d+ bytes \d+", "counter", nft)
    return {"iptables": ipt, "nft": nft, "ip_forward": snap["ip_forward"]}


def _restore(before: dict[str, str]) -> list[str]:
    """Put iptables and ip_forward back as they were; say what still differs."""
    Path("/proc/sys/net/ipv4/ip_forward").write_text(before["ip_forward"])
    if before["iptables"] and shutil.which("iptables-restore"):
        subprocess.run(["iptables-restore"], input=before["iptables"], text=True,
                       capture_output=True)
    after = _comparable(_snapshot())
    want = _comparable(before)
    return [k for k in want if want[k] != after[k]]


@scenario("publish-http", reference="podman",
          description="HTTP requests/s through a published port, 10 clients, fresh "
                      "connections (loopback)")
def publish_http(ctx: Context) -> list[Measurement]:
    name = "publish-http"
    per_batch = 500 if ctx.quick else 2000
    work = ctx.workdir
    rootfs = make_rootfs(work / "rootfs")
    tar = make_rootfs_tar(work / "rootfs.tar", rootfs)
    env = {**os.environ, "BERTH_ROOT": str(work / "berth"), "BERTH_RUN": str(work / "berth-run")}
    subprocess.run([BERTH, "import", str(tar), IMAGE], env=env, check=True, capture_output=True)
    port = _free_port()
    targets: list[tuple[str, tuple[str, int]]] = []
    cleanups: list[Callable[[], None]] = []
    out: list[Measurement] = []
    podman = None
    before = None
    try:
        r = subprocess.run([BERTH, "run", "-d", "--name", "web", "--network", "bridge", "-p",
                            f"127.0.0.1:{port}:80", IMAGE, "sh", "-c", HTTPD.format(port=80)],
                           env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"berth run: {r.stderr.strip()}")
        cleanups.append(lambda: subprocess.run([BERTH, "rm", "-f", "web", "web-ip"], env=env,
                                               capture_output=True))
        # the no-NAT path gets a container of its own: two client paths into one server mix
        # TCP timestamp offsets on the server's TIME_WAIT sockets (PAWS drops, 1 s retries)
        r = subprocess.run([BERTH, "run", "-d", "--name", "web-ip", "--network", "bridge", IMAGE,
                            "sh", "-c", HTTPD.format(port=80)], env=env, capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise RuntimeError(f"berth run: {r.stderr.strip()}")
        doc = json.loads(subprocess.run([BERTH, "network", "inspect", "bridge"], env=env,
                                        capture_output=True, text=True).stdout)[0]
        ip = next(c["IPv4Address"].split("/")[0] for c in doc["Containers"].values()
                  if c["Name"] == "web-ip")
        targets += [("berth -p (DNAT)", ("127.0.0.1", port)),
                    ("berth container IP (no NAT)", (ip, 80))]
        exe = shutil.which("podman")
        if exe and not ctx.quick:
            podman = _Podman(exe, work / "podman")
            podman.run("import", str(tar), IMAGE)
            hport = _free_port()
            podman.run("run", "-d", "--name", "web-host", "--network", "host", "--runtime",
                       "runc", IMAGE, "sh", "-c", HTTPD.format(port=f"127.0.0.1:{hport}"))
            targets.append(("podman", ("127.0.0.1", hport)))
            if os.environ.get("BENCH_PODMAN_PUBLISH") == "1":
                before = _snapshot()
                pport = _free_port()
                podman.run("run", "-d", "--name", "web-pub", "--network", "bridge", "-p",
                           f"127.0.0.1:{pport}:80", "--runtime", "runc", IMAGE, "sh", "-c",
                           HTTPD.format(port=80))
                targets.append(("podman -p (netavark)", ("127.0.0.1", pport)))
        for _, addr in targets:
            _wait_up(addr)
        ms = {label: Measurement(name, label, "podman")
              for label, _ in targets}
        for label, addr in targets:  # one untimed warm-up batch each
            batch(addr, per_batch // 2)
        for _ in range(ctx.n):
            for label, addr in targets:
                m = ms[label]
                if m.status != "ok":
                    continue
                try:
                    m.samples_ms.append(batch(addr, per_batch))
                except Exception as e:  # noqa: BLE001 - reported as the tool's error
                    m.status, m.note = "error", str(e)[-200:]
        for m in ms.values():
            if m.samples_ms:
                rps = per_batch / (statistics.median(m.samples_ms) / 1000)
                m.note = f"{rps:.0f} requests/s at the median ({per_batch} per sample, " \
                         f"{WORKERS} clients, fresh connections)" + \
                         ("; --network host, no NAT" if m.tool == "podman" else "")
        out = list(ms.values())
        if podman is None:
            why = "quick mode: berth alone" if ctx.quick else "podman is not installed"
            out.append(Measurement(name, "podman", "podman", status="skipped", note=why))
        if before is None and not ctx.quick:
            out.append(Measurement(name, "podman -p (netavark)", "podman",
                                   status="skipped", note="netavark sets ip_forward=1: set "
                                   "BENCH_PODMAN_PUBLISH=1 where that is allowed"))
        return out
    finally:
        for fn in cleanups:
            fn()
        if podman is not None:
            subprocess.run(podman.argv("rm", "-a", "-f"), env=podman.env, capture_output=True,
                           timeout=120)
            podman.reset()
        if before is not None:
            differs = _restore(before)
            if differs:
                out.append(Measurement(name, "podman -p (netavark)", "", status="error",
                                       note=f"left changed after restoring: {differs}"))
