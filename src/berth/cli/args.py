"""docker's flag grammar (cobra/pflag), small and without argparse.

    spec = Command("berth image ls", "[OPTIONS] [REPOSITORY[:TAG]]", "List images",
                   [Flag("all", "a", help="Show all images"),
                    Flag("filter", "f", value="filter", repeat=True, help="Filter output")],
                   max_args=1)
    opts, args = spec.parse(argv)          # opts["all"] -> bool, opts["filter"] -> [str], opts["no_trunc"]

What pflag accepts: `-a`, `-aq` (grouped booleans), `-fVALUE`, `-f VALUE`, `--filter VALUE`,
`--filter=VALUE`, `--all=false`, `--` ending flags. Flags may follow positional arguments unless
the command stops at its first argument (`interspersed=False`, as `run IMAGE CMD...` does).
Errors are UsageError (exit 125) with pflag's wording plus "See 'berth … --help'.".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from berth.errors import InvalidArgument

__all__ = ["Command", "Flag", "HelpRequested", "UsageError"]

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


class UsageError(InvalidArgument):
    pass


class HelpRequested(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass(frozen=True)
class Flag:
    name: str
    short: str = ""
    value: str = ""  # "" for a boolean flag, else the value's name in --help ("string")
    repeat: bool = False  # a list, one item per use
    default: Any = None
    help: str = ""

    @property
    def key(self) -> str:
        """The name in the parsed options: `no-trunc` -> `no_trunc`."""
        return self.name.replace("-", "_")


@dataclass
class Command:
    path: str  # "berth image ls"
    usage: str  # "[OPTIONS] [REPOSITORY[:TAG]]"
    summary: str
    flags: list[Flag] = field(default_factory=list)
    min_args: int = 0
    max_args: int | None = None
    interspersed: bool = True
    aliases: tuple[str, ...] = ()

    def help(self) -> str:
        lines = [f"Usage:  {self.path} {self.usage}".rstrip(), "", self.summary, ""]
        if self.aliases:
            lines += ["Aliases:", "  " + ", ".join(self.aliases), ""]
        lines.append("Options:")
        rows = []
        for f in [*self.flags, Flag("help", help="Print usage")]:
            name = (f"-{f.short}, " if f.short else "    ") + f"--{f.name}"
            if f.value:
                name += f" {f.value}"
            rows.append((name, f.help))
        width = max(len(n) for n, _ in rows)
        lines += [f"  {n.ljust(width)}   {h}".rstrip() for n, h in rows]
        return "\n".join(lines) + "\n"

    def _error(self, text: str) -> UsageError:
        return UsageError(f"{text}\nSee '{self.path} --help'.")

    def _count(self) -> str:
        if self.max_args == self.min_args:
            return f"exactly {self.min_args} argument{'s' if self.min_args != 1 else ''}"
        if self.max_args is None:
            return f"at least {self.min_args} argument{'s' if self.min_args != 1 else ''}"
        return f"at most {self.max_args} argument{'s' if self.max_args != 1 else ''}"

    def parse(self, argv: list[str]) -> tuple[dict[str, Any], list[str]]:
        by_long = {f.name: f for f in self.flags}
        by_short = {f.short: f for f in self.flags if f.short}
        opts: dict[str, Any] = {}
        for f in self.flags:
            opts[f.key] = [] if f.repeat else (f.default if f.default is not None
                                                 else ("" if f.value else False))
        args: list[str] = []
        i = 0

        def take(f: Flag, inline: str | None, shown: str) -> None:
            nonlocal i
            if not f.value:
                if inline is None:
                    opts[f.key] = True
                elif inline in _TRUE:
                    opts[f.key] = True
                elif inline in _FALSE:
                    opts[f.key] = False
                else:
                    raise self._error(f'invalid argument "{inline}" for "{shown}" flag: '
                                      'strconv.ParseBool: parsing "{inline}": invalid syntax'
                                      .replace("{inline}", inline))
                return
            if inline is None:
                if i + 1 >= len(argv):
                    raise self._error(f"flag needs an argument: {shown}")
                i += 1
                inline = argv[i]
            if f.repeat:
                opts[f.key].append(inline)
            else:
                opts[f.key] = inline

        while i < len(argv):
            a = argv[i]
            if a == "--":
                args += argv[i + 1:]
                break
            if a == "--help" or (a == "-h" and "h" not in by_short):
                raise HelpRequested(self.help())
            if a.startswith("--") and len(a) > 2:
                name, eq, val = a[2:].partition("=")
                f = by_long.get(name)
                if f is None:
                    raise self._error(f"unknown flag: --{name}")
                take(f, val if eq else None, f"--{name}")
            elif a.startswith("-") and len(a) > 1:
                j = 1
                while j < len(a):
                    c = a[j]
                    f = by_short.get(c)
                    if f is None:
                        if c == "h":
                            raise HelpRequested(self.help())
                        raise self._error(f"unknown shorthand flag: '{c}' in {a}")
                    shown = f"-{c}, --{f.name}"
                    if f.value:
                        rest = a[j + 1:]
                        take(f, rest.removeprefix("=") if rest else None, shown)
                        break
                    if a[j + 1:j + 2] == "=":
                        take(f, a[j + 2:], shown)
                        break
                    take(f, None, shown)
                    j += 1
            else:
                args.append(a)
                if not self.interspersed:
                    args += argv[i + 1:]
                    break
            i += 1
        if len(args) < self.min_args or (self.max_args is not None and len(args) > self.max_args):
            raise UsageError(f'"{self.path}" requires {self._count()}.\n'
                             f"See '{self.path} --help'.\n\n"
                             f"Usage:  {self.path} {self.usage}\n\n{self.summary}")
        return opts, args
