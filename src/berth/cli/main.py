"""`berth` entry point: the COMMANDS table, global flags, exit codes.

Start-up stays lean: `berth --help` and `berth --version` import no command module; a command
imports only its own module (pip's commands_dict pattern). Commands arrive with the issues that
build them (containers, images, builder, networks, system); this table lists what exists.
"""

from __future__ import annotations

import importlib
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "version": ("berth.cli.commands.version", "Show the berth version information"),
    "image": ("berth.cli.commands.image", "Manage images"),
    "images": ("berth.cli.commands.image:ls", "List images"),
    "rmi": ("berth.cli.commands.image:rm", "Remove one or more images"),
    "tag": ("berth.cli.commands.image:tag", "Create a tag TARGET_IMAGE that refers to "
            "SOURCE_IMAGE"),
    "history": ("berth.cli.commands.image:history", "Show the history of an image"),
    "import": ("berth.cli.commands.image:import", "Import the contents from a tarball to "
               "create a filesystem image"),
    "save": ("berth.cli.commands.image:save", "Save one or more images to a tar archive"),
    "load": ("berth.cli.commands.image:load", "Load an image from a tar archive or STDIN"),
    "inspect": ("berth.cli.commands.inspect", "Return low-level information on berth "
                "objects"),
    "build": ("berth.cli.commands.build", "Build an image from a Dockerfile"),
    "builder": ("berth.cli.commands.builder", "Manage builds"),
    "system": ("berth.cli.commands.system", "Manage berth"),
    "events": ("berth.cli.commands.events", "Get real time events from the server"),
    "info": ("berth.cli.commands.info", "Display system-wide information"),
    "volume": ("berth.cli.commands.volume", "Manage volumes"),
    "network": ("berth.cli.commands.network", "Manage networks"),
    "container": ("berth.cli.commands.container", "Manage containers"),
    "run": ("berth.cli.commands.container:run", "Create and run a new container from an image"),
    "create": ("berth.cli.commands.container:create", "Create a new container"),
    "start": ("berth.cli.commands.container:start", "Start one or more stopped containers"),
    "ps": ("berth.cli.commands.container:ls", "List containers"),
    "logs": ("berth.cli.commands.container:logs", "Fetch the logs of a container"),
    "stop": ("berth.cli.commands.container:stop", "Stop one or more running containers"),
    "restart": ("berth.cli.commands.container:restart", "Restart one or more containers"),
    "kill": ("berth.cli.commands.container:kill", "Kill one or more running containers"),
    "rm": ("berth.cli.commands.container:rm", "Remove one or more containers"),
    "exec": ("berth.cli.commands.container:exec", "Execute a command in a running container"),
    "pause": ("berth.cli.commands.container:pause", "Pause all processes within one or more "
              "containers"),
    "unpause": ("berth.cli.commands.container:unpause", "Unpause all processes within one or "
                "more containers"),
    "top": ("berth.cli.commands.container:top", "Display the running processes of a "
            "container"),
    "rename": ("berth.cli.commands.container:rename", "Rename a container"),
    "stats": ("berth.cli.commands.container:stats", "Display a live stream of container(s) "
              "resource usage statistics"),
    "attach": ("berth.cli.commands.container:attach", "Attach local standard input, output, "
               "and error streams to a running container"),
    "update": ("berth.cli.commands.container:update", "Update configuration of one or more "
               "containers"),
    "export": ("berth.cli.commands.container:export", "Export a container's filesystem as a "
               "tar archive"),
    "port": ("berth.cli.commands.container:port", "List port mappings or a specific mapping "
             "for the container"),
    "diff": ("berth.cli.commands.container:diff", "Inspect changes to files or directories "
             "on a container's filesystem"),
    "commit": ("berth.cli.commands.container:commit", "Create a new image from a container's "
               "changes"),
    "wait": ("berth.cli.commands.container:wait", "Block until one or more containers stop, "
             "then print their exit codes"),
    "cp": ("berth.cli.commands.container:cp", "Copy files/folders between a container and "
           "the local filesystem"),
}

# What an error costs, as docker's CLI: a flag it cannot parse 125 (every command), the
# engine refusing `run` or `create` 125 (their own StatusError), any other failure 1.
EXIT_USAGE = 125
EXIT_RUN_FAILED = 125
EXIT_FAILED = 1

USAGE = """Usage:  berth [OPTIONS] COMMAND

A container engine: OCI runtime, layered image store and a docker-compatible CLI

Options:
  -h, --help       Print usage
  -v, --version    Print version information and quit

Commands:
{commands}

The OCI runtime itself is `berth-runtime` (runc's command line).
"""


def usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = "\n".join(f"  {n.ljust(width)}  {h}" for n, (_, h) in sorted(COMMANDS.items()))
    return USAGE.format(commands=lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage(), end="")
        return 0 if args else 1
    if args[0] in ("-v", "--version"):
        from berth import __version__
        print(f"berth version {__version__}")
        return 0
    name = args[0]
    if name not in COMMANDS:
        print(f"berth: '{name}' is not a berth command.\nSee 'berth --help'", file=sys.stderr)
        return EXIT_FAILED
    target, _, sub = COMMANDS[name][0].partition(":")
    module = importlib.import_module(target)
    if sub:  # a top-level alias of a group's subcommand: `berth images` = `berth image ls`
        code: int = module.dispatch(sub, args[1:], f"berth {name}")
    else:
        code = module.run(args[1:])
    return code


def run_group(group: str, summary: str, subcommands: dict[str, str],
              aliases: dict[str, str], args: list[str],
              dispatch: Callable[[str, list[str], str], int]) -> int:
    """A management command (`berth image …`, `berth container …`): its usage, its aliases
    (`ps` for `ls`), docker's message for an unknown subcommand."""
    if not args or args[0] in ("-h", "--help"):
        width = max(map(len, subcommands))
        lines = "\n".join(f"  {k.ljust(width)}  {v}" for k, v in subcommands.items())
        print(f"Usage:  berth {group} COMMAND\n\n{summary}\n\nCommands:\n{lines}\n\n"
              f"Run 'berth {group} COMMAND --help' for more information on a command.")
        return 0 if args else 1
    name = aliases.get(args[0], args[0])
    if name not in subcommands:
        print(f"berth: '{group} {args[0]}' is not a berth command.\n"
              f"See 'berth {group} --help'", file=sys.stderr)
        return EXIT_FAILED
    return dispatch(name, args[1:], f"berth {group} {name}")


def guarded(fn: Callable[[], int], failed: int = EXIT_FAILED) -> int:
    """Run a command body: `--help` prints usage (0); a flag that does not parse prints
    pflag's message (125); a BerthError or OSError prints "Error: …" and costs `failed`: 1,
    as any docker command that fails, but 125 for `run` and `create`."""
    from berth.cli.args import HelpRequested, UsageError
    from berth.errors import BerthError
    try:
        return fn()
    except HelpRequested as h:
        sys.stdout.write(h.text)
        return 0
    except UsageError as e:
        print(e, file=sys.stderr)
        return EXIT_USAGE
    except BerthError as e:
        print(f"Error: {e}", file=sys.stderr)
        return failed
    except BrokenPipeError:
        return 141
    except OSError as e:  # the disk is full, a path is not writable…: said plainly
        print(f"Error: {e}", file=sys.stderr)
        return failed
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
