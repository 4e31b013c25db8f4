"""`berth build` (also `berth image build`, `berth builder build`): docker's flags, the
classic builder's log. Every failure exits 1, as `docker build` does."""

from __future__ import annotations

import os
import sys

from berth.cli.args import Command, Flag
from berth.errors import InvalidArgument

SUMMARY = "Build an image from a Dockerfile"
USAGE = "[OPTIONS] PATH | -"


def command(path: str) -> Command:
    return Command(path, USAGE, SUMMARY, [
        Flag("tag", "t", "list", repeat=True, help='Name and optionally a tag in the '
             '"name:tag" format'),
        Flag("file", "f", "string", help="Name of the Dockerfile (Default is "
             "'PATH/Dockerfile'; '-' reads it from STDIN)"),
        Flag("build-arg", value="list", repeat=True, help="Set build-time variables"),
        Flag("target", value="string", help="Set the target build stage to build"),
        Flag("no-cache", help="Do not use cache when building the image"),
        Flag("pull", help="Always attempt to pull a newer version of the image (needs a "
             "registry client: fails for now)"),
        Flag("label", value="list", repeat=True, help="Set metadata for an image"),
        Flag("quiet", "q", help="Suppress the build output and print image ID on success"),
        Flag("progress", value="string", default="auto", help="Set type of progress output "
             "(auto, plain, tty): berth always prints the plain log"),
        Flag("iidfile", value="string", help="Write the image ID to the file"),
        Flag("network", value="string", default="default", help="Set the networking mode for "
             "the RUN instructions during build: default (the host's, until bridge networks "
             "exist), host or none"),
        Flag("cache-from", value="strings", repeat=True, help="Images to consider as cache "
             "sources"),
        Flag("explain", help="Say for every step that misses the cache why it missed"),
        Flag("rm", default=True, help="Remove intermediate containers after a successful "
             "build (berth always removes them)"),
        Flag("force-rm", help="Always remove intermediate containers (berth always does)"),
        Flag("platform", value="string", help="Set platform (this host's only)"),
    ], min_args=1, max_args=1)


def run(args: list[str]) -> int:
    """`berth build …`."""
    return main(args, "berth build")


def main(args: list[str], path: str) -> int:
    from berth.cli.args import HelpRequested, UsageError
    from berth.errors import BerthError
    try:
        return _build(args, path)
    except HelpRequested as h:
        sys.stdout.write(h.text)
        return 0
    except UsageError as e:
        print(e, file=sys.stderr)
        return 125
    except BerthError as e:
        sys.stdout.flush()
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _build(args: list[str], path: str) -> int:
    from berth.build.builder import Builder, BuildOptions
    from berth.engine.context import engine
    opts, rest = command(path).parse(args)
    build_args: dict[str, str | None] = {}
    for item in opts["build_arg"]:
        k, eq, v = item.partition("=")
        if not k:
            raise InvalidArgument(f"invalid build arg {item!r}")
        build_args[k] = v if eq else os.environ.get(k)
    from berth.engine.options import parse_key_values
    labels = parse_key_values(opts["label"], "label")
    platform = opts["platform"]
    if platform:
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine,
                                                          os.uname().machine)
        if platform not in ("linux", f"linux/{arch}"):
            raise InvalidArgument(f"--platform {platform}: berth builds for linux/{arch} only")
    cache_from = [x for item in opts["cache_from"] for x in item.split(",") if x]
    context = rest[0]
    if "://" in context or context.startswith("git@"):
        raise InvalidArgument(f"unable to prepare context: {context}: a URL or git context "
                              "needs network access, which berth's builds do not use; clone "
                              "or download it and build the directory")
    bo = BuildOptions(context=context, dockerfile=opts["file"] or None, tags=opts["tag"],
                      build_args=build_args, target=opts["target"] or "",
                      no_cache=opts["no_cache"], pull=opts["pull"],
                      labels=labels, quiet=opts["quiet"], network=opts["network"] or "default",
                      iidfile=opts["iidfile"] or "", cache_from=cache_from,
                      explain=opts["explain"])
    from berth.oci import reference
    for t in bo.tags:
        reference.parse(t)  # a bad tag fails before the build, as docker's
    image_id = Builder(engine()).build(bo, sys.stdin.buffer)
    if bo.quiet:
        print(image_id)
    return 0
