"""`berth info` (= `berth system info`): system-wide information in docker's layout.

The default output is docker's "Client:" / "Server:" report; `--format` is a Go template over
docker's info document (`{{.Containers}}`, `{{.Driver}}`, `{{json .}}` with docker's key
names: the server's fields at the top level, then "ClientInfo").
"""

from __future__ import annotations

import sys
from typing import Any

from berth.cli.args import Command, Flag

SUMMARY = "Display system-wide information"
EXIT_FORMAT = 64

# JSON name -> Go field name, where docker's json tags rename a field of system.Info
_RENAMED = {"CpuCfsPeriod": "CPUCfsPeriod", "CpuCfsQuota": "CPUCfsQuota",
            "HttpProxy": "HTTPProxy", "HttpsProxy": "HTTPSProxy"}
_OMITEMPTY = ("SystemStatus", "CgroupVersion", "ProductLicense", "DefaultAddressPools",
              "Containerd", "KernelMemory", "KernelMemoryTCP", "BridgeNfIptables",
              "BridgeNfIp6tables")


def run(args: list[str]) -> int:
    from berth.cli.main import guarded
    return guarded(lambda: main(args, "berth info"))


def client_info() -> dict[str, Any]:
    from berth import __version__
    from berth.engine.info import os_arch
    return {"Debug": False, "Version": __version__, "Os": "linux", "Arch": os_arch(),
            "Context": "default", "Plugins": [], "Warnings": None}


def template_data(info: dict[str, Any], client: dict[str, Any]) -> Any:
    """docker's dockerInfo: the embedded system.Info, then ClientInfo (its clientVersion
    embedded: Version, ApiVersion… omitted when empty, Context always)."""
    from berth.cli.gostruct import Struct, from_json
    values = from_json(info, _RENAMED, _OMITEMPTY).fields()
    c = Struct([
        ("Debug", "", client["Debug"]),
        ("Platform", "Platform,omitempty", None),
        ("Version", "Version,omitempty", client["Version"]),
        ("APIVersion", "ApiVersion,omitempty", client.get("ApiVersion", "")),
        ("DefaultAPIVersion", "DefaultAPIVersion,omitempty", ""),
        ("GitCommit", "GitCommit,omitempty", ""),
        ("GoVersion", "GoVersion,omitempty", ""),
        ("Os", "Os,omitempty", client["Os"]),
        ("Arch", "Arch,omitempty", client["Arch"]),
        ("BuildTime", "BuildTime,omitempty", ""),
        ("Context", "", client["Context"]),
        ("Plugins", "", client["Plugins"]),
        ("Warnings", "", client["Warnings"]),
    ])
    return Struct([*values, ("ServerErrors", "ServerErrors,omitempty", None),
                   ("ClientInfo", "ClientInfo,omitempty", c),
                   ("ClientErrors", "ClientErrors,omitempty", None)])


def pretty(info: dict[str, Any], client: dict[str, Any]) -> str:
    """docker's prettyPrintInfo (Println: values joined by one space)."""
    from berth.cli.format import bytes_size

    def b(v: bool) -> str:
        return "true" if v else "false"

    out = ["Client:", f" Version:    {client['Version']}", f" Context:    {client['Context']}",
           f" Debug Mode: {b(client['Debug'])}", "", "Server:"]

    def line(label: str, value: Any, nonempty: bool = False) -> None:
        if nonempty and value == "":
            return
        out.append(f"{label} {b(value) if isinstance(value, bool) else value}")

    line(" Containers:", info["Containers"])
    line("  Running:", info["ContainersRunning"])
    line("  Paused:", info["ContainersPaused"])
    line("  Stopped:", info["ContainersStopped"])
    line(" Images:", info["Images"])
    line(" Server Version:", info["ServerVersion"], True)
    line(" Storage Driver:", info["Driver"], True)
    out += [f"  {k}: {v}" for k, v in info.get("DriverStatus") or []]
    line(" Logging Driver:", info["LoggingDriver"], True)
    line(" Cgroup Driver:", info["CgroupDriver"], True)
    line(" Cgroup Version:", info.get("CgroupVersion", ""), True)
    plugins = info["Plugins"]
    out.append(" Plugins:")
    line("  Volume:", " ".join(plugins["Volume"] or []))
    line("  Network:", " ".join(plugins["Network"] or []))
    line("  Log:", " ".join(plugins["Log"] or []))
    line(" Swarm:", info["Swarm"]["LocalNodeState"])
    if info["Runtimes"]:
        line(" Runtimes:", " ".join(info["Runtimes"]))
        line(" Default Runtime:", info["DefaultRuntime"])
    if info["OSType"] == "linux":
        line(" Init Binary:", info["InitBinary"])
        line(" containerd version:", info["ContainerdCommit"]["ID"])
        line(" runc version:", info["RuncCommit"]["ID"])
        line(" init version:", info["InitCommit"]["ID"])
        if info["SecurityOptions"]:
            out.append(" Security Options:")
            for opt in info["SecurityOptions"]:
                kv = dict(p.partition("=")[::2] for p in opt.split(","))
                out.append("  " + kv.get("name", ""))
                if "profile" in kv:
                    out.append("   Profile: " + kv["profile"])
    line(" Kernel Version:", info["KernelVersion"], True)
    line(" Operating System:", info["OperatingSystem"], True)
    line(" OSType:", info["OSType"], True)
    line(" Architecture:", info["Architecture"], True)
    line(" CPUs:", info["NCPU"])
    line(" Total Memory:", bytes_size(info["MemTotal"]))
    line(" Name:", info["Name"], True)
    line(" ID:", info["ID"], True)
    line(" Docker Root Dir:", info["DockerRootDir"])
    line(" Debug Mode:", info["Debug"])
    line(" HTTP Proxy:", info["HttpProxy"], True)
    line(" HTTPS Proxy:", info["HttpsProxy"], True)
    line(" No Proxy:", info["NoProxy"], True)
    if info["Labels"]:
        out.append(" Labels:")
        out += ["  " + lbl for lbl in info["Labels"]]
    line(" Experimental:", info["ExperimentalBuild"])
    line(" Live Restore Enabled:", info["LiveRestoreEnabled"])
    out.append("")
    return "\n".join(out) + "\n"


def main(args: list[str], path: str) -> int:
    from berth.cli.format import Template, TemplateError
    cmd = Command(path, "[OPTIONS]", SUMMARY, [
        Flag("format", "f", "string", help="Format output using a custom template: 'json', "
             "or a Go template"),
    ], max_args=0, aliases=("berth system info", "berth info"))
    opts, _ = cmd.parse(args)
    fmt = opts["format"]
    tmpl = None
    if fmt:
        try:
            tmpl = Template("{{json .}}" if fmt == "json" else fmt)
        except TemplateError as e:
            print(f"template parsing error: {e}", file=sys.stderr)
            return EXIT_FORMAT
    from berth.engine.context import engine
    from berth.engine.info import system_info
    info, client = system_info(engine()), client_info()
    if tmpl is None:
        sys.stdout.write(pretty(info, client))
        for w in info.get("Warnings") or []:
            print(w, file=sys.stderr)
        return 0
    sys.stdout.write(tmpl.execute(template_data(info, client), type_name="system.dockerInfo")
                     + "\n")
    return 0
