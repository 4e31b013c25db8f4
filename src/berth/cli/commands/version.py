"""`berth version`: the client's and the (embedded) server's versions, in docker's layout.

`--format` is a Go template over docker's versionInfo: `{{.Client.Version}}`,
`{{.Server.Version}}`, `{{index .Server.Components 0}}`, `{{json .}}`. Start-up stays lean: the
standard library, berth.cli.args, and berth.cli.format only with --format.
"""

from __future__ import annotations

import sys
from typing import Any

from berth.cli.args import Command, Flag

SUMMARY = "Show the berth version information"
EXIT_FORMAT = 64


def run(args: list[str]) -> int:
    from berth.cli.main import guarded
    return guarded(lambda: main(args, "berth version"))


def client_version() -> dict[str, Any]:
    """docker's clientVersion, as JSON."""
    from berth import __version__
    from berth.engine.info import API_VERSION, os_arch
    return {"Version": __version__, "ApiVersion": API_VERSION, "DefaultAPIVersion": API_VERSION,
            "GitCommit": "", "GoVersion": "", "Os": "linux", "Arch": os_arch(),
            "BuildTime": "", "Context": "default"}


def template_data(client: dict[str, Any], server: dict[str, Any]) -> Any:
    """docker's versionInfo{Client clientVersion; Server *types.Version} for templates."""
    from berth.cli.format import GoMap
    from berth.cli.gostruct import Struct, from_json
    c = from_json(client, {"ApiVersion": "APIVersion"},
                  [k for k in client if k != "Context"])
    components = [Struct([("Name", "", comp["Name"]), ("Version", "", comp["Version"]),
                          ("Details", "Details,omitempty", GoMap(comp.get("Details") or {}))])
                  for comp in server.get("Components") or []]
    s = from_json({**server, "Components": components}, {"ApiVersion": "APIVersion"},
                  ("Components", "MinAPIVersion", "KernelVersion", "Experimental",
                   "BuildTime"))
    return Struct([("Client", "", c), ("Server", "", s)])


def pretty(client: dict[str, Any], server: dict[str, Any]) -> str:
    """docker's default version template through its tabwriter (minwidth 20, padding 1)."""
    def row(label: str, value: str) -> str:
        return label.ljust(max(20, len(label) + 1)) + value

    python = "%d.%d.%d" % sys.version_info[:3]
    lines = ["Client:",
             row(" Version:", client["Version"]),
             row(" API version:", client["ApiVersion"]),
             row(" Python version:", python),
             row(" OS/Arch:", f"{client['Os']}/{client['Arch']}"),
             row(" Context:", client["Context"]),
             "",
             "Server:" + (f" {server['Platform']['Name']}" if server["Platform"]["Name"] else "")]
    for comp in server.get("Components") or []:
        details = comp.get("Details") or {}
        lines.append(f" {comp['Name']}:")
        if comp["Name"] == "Engine":
            lines += [row("  Version:", comp["Version"]),
                      row("  API version:", f"{details.get('ApiVersion', '')} (minimum version "
                          f"{details.get('MinAPIVersion', '')})"),
                      row("  Python version:", details.get("PythonVersion", python)),
                      row("  OS/Arch:", f"{details.get('Os', '')}/{details.get('Arch', '')}"),
                      row("  Kernel:", details.get("KernelVersion", "")),
                      row("  Experimental:", details.get("Experimental", "false"))]
        else:
            lines.append(row("  Version:", comp["Version"]))
            lines += [row(f"  {k}:", details[k]) for k in sorted(details)]
    return "\n".join(lines) + "\n"


def main(args: list[str], path: str) -> int:
    cmd = Command(path, "[OPTIONS]", SUMMARY, [
        Flag("format", "f", "string", help="Format output using a custom template: 'json', "
             "or a Go template"),
    ], max_args=0)
    opts, _ = cmd.parse(args)
    from berth.engine.info import server_version
    client, server = client_version(), server_version()
    fmt = opts["format"]
    if not fmt:
        sys.stdout.write(pretty(client, server))
        return 0
    from berth.cli.format import Template, TemplateError, tabwrite
    try:
        tmpl = Template("{{json .}}" if fmt == "json" else fmt)
    except TemplateError as e:
        print(f"template parsing error: {e}", file=sys.stderr)
        return EXIT_FORMAT
    text = tmpl.execute(template_data(client, server), type_name="system.versionInfo")
    sys.stdout.write(tabwrite(text + "\n", 20, 1))
    return 0
