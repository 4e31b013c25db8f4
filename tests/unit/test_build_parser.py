"""The Dockerfile parser against buildkit's own parser tests and the Dockerfile reference.

Sources (moby/buildkit, frontend/dockerfile/):
- parser/testfiles/<name>/{Dockerfile,result}: copied verbatim below; `result` is buildkit's
  Node.Dump() of the parse, compared here with a dump of our instructions (ENV and LABEL
  dumps carry a third "separator" node per pair that berth does not keep: it is dropped).
- parser/parser_test.go, parser_heredoc_test.go, directives_test.go, line_parsers_test.go,
  instructions/parse.go (error messages), docs/reference.md (the Dockerfile reference).
"""

from __future__ import annotations

import ast
import re

import pytest

from berth.build.dockerfile import (
    DockerfileError,
    Heredoc,
    Instruction,
    flag_value,
    parse,
    parse_heredoc_word,
)
from berth.errors import InvalidArgument

# -- buildkit parser/testfiles: (Dockerfile, result) ----------------------------------------------

BUILDKIT_TESTFILES = {
    'ADD-COPY-with-JSON': (
        'FROM\tubuntu:14.04\n'
        'LABEL\tmaintainer\tSeongyeol Lim <seongyeol37@gmail.com>\n'
        '\n'
        'COPY\t.\t/go/src/github.com/docker/docker\n'
        'ADD\t\t.\t/\n'
        'ADD\t\tnull /\n'
        'COPY\tnullfile /tmp\n'
        'ADD\t\t[ "vimrc", "/tmp" ]\n'
        'COPY\t[ "bashrc", "/tmp" ]\n'
        'COPY\t[ "test file", "/tmp" ]\n'
        'ADD\t\t[ "test file", "/tmp/test file" ]\n'
        ,
        '(from "ubuntu:14.04")\n'
        '(label "maintainer" "Seongyeol Lim <seongyeol37@gmail.com>" "")\n'
        '(copy "." "/go/src/github.com/docker/docker")\n'
        '(add "." "/")\n'
        '(add "null" "/")\n'
        '(copy "nullfile" "/tmp")\n'
        '(add "vimrc" "/tmp")\n'
        '(copy "bashrc" "/tmp")\n'
        '(copy "test file" "/tmp")\n'
        '(add "test file" "/tmp/test file")\n'
    ),
    'args': (
        'ARG foo bar=baz\n'
        'FROM ubuntu\n'
        'ARG abc="123 456" def\n'
        ,
        '(arg "foo" "bar=baz")\n'
        '(from "ubuntu")\n'
        '(arg "abc=\\"123 456\\"" "def")\n'
    ),
    'continue-at-eof': (
        'FROM alpine:3.5\n'
        '\n'
        'RUN something \\'
        ,
        '(from "alpine:3.5")\n'
        '(run "something")\n'
    ),
    'continueIndent': (
        'FROM ubuntu:14.04\n'
        '\n'
        'RUN echo hello\\\n'
        '  world\\\n'
        '  goodnight  \\\n'
        '  moon\\\n'
        '  light\\\n'
        'ning\n'
        'RUN echo hello  \\\n'
        '  world\n'
        'RUN echo hello  \\\n'
        'world\n'
        'RUN echo hello \\\n'
        'goodbye\\\n'
        'frog\n'
        'RUN echo hello  \\  \n'
        'world\n'
        'RUN echo hi \\\n'
        ' \\\n'
        ' world \\\n'
        '\\\n'
        ' good\\\n'
        '\\\n'
        'night\n'
        'RUN echo goodbye\\\n'
        'frog\n'
        'RUN echo good\\\n'
        'bye\\\n'
        'frog\n'
        '\n'
        'RUN echo hello \\\n'
        '# this is a comment\n'
        '\n'
        '# this is a comment with a blank line surrounding it\n'
        '\n'
        'this is some more useful stuff\n'
        ,
        '(from "ubuntu:14.04")\n'
        '(run "echo hello  world  goodnight    moon  lightning")\n'
        '(run "echo hello    world")\n'
        '(run "echo hello  world")\n'
        '(run "echo hello goodbyefrog")\n'
        '(run "echo hello  world")\n'
        '(run "echo hi   world  goodnight")\n'
        '(run "echo goodbyefrog")\n'
        '(run "echo goodbyefrog")\n'
        '(run "echo hello this is some more useful stuff")\n'
    ),
    'env': (
        'FROM ubuntu\n'
        'ENV name value\n'
        'ENV name=value\n'
        'ENV name=value name2=value2\n'
        'ENV name="value value1"\n'
        'ENV name=value\\ value2\n'
        'ENV name="value\'quote space\'value2"\n'
        'ENV name=\'value"double quote"value2\'\n'
        'ENV name=value\\ value2 name2=value2\\ value3\n'
        'ENV name="a\\"b"\n'
        'ENV name="a\\\'b"\n'
        "ENV name='a\\'b'\n"
        "ENV name='a\\'b''\n"
        'ENV name=\'a\\"b\'\n'
        'ENV name="\'\'"\n'
        "# don't put anything after the next line - it must be the last line of the\n"
        '# Dockerfile and it must end with \\\n'
        'ENV name=value \\\n'
        '    name1=value1 \\\n'
        '    name2="value2a \\\n'
        '           value2b" \\\n'
        '    name3="value3a\\n\\"value3b\\"" \\\n'
        '\tname4="value4a\\\\nvalue4b" \\\n'
        ,
        '(from "ubuntu")\n'
        '(env "name" "value" "")\n'
        '(env "name" "value" "=")\n'
        '(env "name" "value" "=" "name2" "value2" "=")\n'
        '(env "name" "\\"value value1\\"" "=")\n'
        '(env "name" "value\\\\ value2" "=")\n'
        '(env "name" "\\"value\'quote space\'value2\\"" "=")\n'
        '(env "name" "\'value\\"double quote\\"value2\'" "=")\n'
        '(env "name" "value\\\\ value2" "=" "name2" "value2\\\\ value3" "=")\n'
        '(env "name" "\\"a\\\\\\"b\\"" "=")\n'
        '(env "name" "\\"a\\\\\'b\\"" "=")\n'
        '(env "name" "\'a\\\\\'b\'" "=")\n'
        '(env "name" "\'a\\\\\'b\'\'" "=")\n'
        '(env "name" "\'a\\\\\\"b\'" "=")\n'
        '(env "name" "\\"\'\'\\"" "=")\n'
        '(env "name" "value" "=" "name1" "value1" "=" "name2" "\\"value2a            value2b\\"" "=" "name3" "\\"value3a\\\\n\\\\\\"value3b\\\\\\"\\"" "=" "name4" "\\"value4a\\\\\\\\nvalue4b\\"" "=")\n'
    ),
    'escape': (
        '#escape = `\n'
        '\n'
        'FROM image\n'
        'LABEL maintainer foo@bar.com\n'
        'ENV GOPATH `\n'
        '\\go'
        ,
        '(from "image")\n'
        '(label "maintainer" "foo@bar.com" "")\n'
        '(env "GOPATH" "\\\\go" "")\n'
    ),
    'escape-after-comment': (
        '# Comment here. Should not be looking for the following parser directive.\n'
        '# Hence the following line will be ignored, and the subsequent backslash\n'
        '# continuation will be the default.\n'
        '# escape = `\n'
        '\n'
        'FROM image\n'
        'LABEL maintainer foo@bar.com\n'
        'ENV GOPATH \\\n'
        '\\go'
        ,
        '(from "image")\n'
        '(label "maintainer" "foo@bar.com" "")\n'
        '(env "GOPATH" "\\\\go" "")\n'
    ),
    'escape-nonewline': (
        '# escape = `\n'
        '# There is no white space line after the directives. This still succeeds, but goes\n'
        '# against best practices.\n'
        'FROM image\n'
        'LABEL maintainer foo@bar.com\n'
        'ENV GOPATH `\n'
        '\\go\n'
        ,
        '(from "image")\n'
        '(label "maintainer" "foo@bar.com" "")\n'
        '(env "GOPATH" "\\\\go" "")\n'
    ),
    'escape-with-syntax': (
        '# syntax = docker/dockerfile\n'
        '# escape = `\n'
        '\n'
        'FROM `\n'
        '    image\n'
        ,
        '(from "image")\n'
    ),
    'escapes': (
        'FROM ubuntu:14.04\n'
        'LABEL maintainer Erik \\\\Hollensbe <erik@hollensbe.org>\\"\n'
        '\n'
        'RUN apt-get \\update && \\\n'
        '  apt-get \\"install znc -y\n'
        'ADD \\conf\\\\" /.znc\n'
        '\n'
        'RUN foo \\\n'
        '\n'
        'bar \\\n'
        '\n'
        'baz\n'
        '\n'
        'CMD [ "\\/usr\\\\\\"/bin/znc", "-f", "-r" ]\n'
        ,
        '(from "ubuntu:14.04")\n'
        '(label "maintainer" "Erik \\\\\\\\Hollensbe <erik@hollensbe.org>\\\\\\"" "")\n'
        '(run "apt-get \\\\update &&   apt-get \\\\\\"install znc -y")\n'
        '(add "\\\\conf\\\\\\\\\\"" "/.znc")\n'
        '(run "foo bar baz")\n'
        '(cmd "/usr\\\\\\"/bin/znc" "-f" "-r")\n'
    ),
    'flags': (
        'FROM scratch\n'
        'COPY foo /tmp/\n'
        'COPY --user=me foo /tmp/\n'
        'COPY --doit=true foo /tmp/\n'
        'COPY --user=me --doit=true foo /tmp/\n'
        'COPY --doit=true -- foo /tmp/\n'
        'COPY -- foo /tmp/\n'
        'CMD --doit [ "a", "b" ]\n'
        'CMD --doit=true -- [ "a", "b" ]\n'
        'CMD --doit -- [ ]\n'
        ,
        '(from "scratch")\n'
        '(copy "foo" "/tmp/")\n'
        '(copy ["--user=me"] "foo" "/tmp/")\n'
        '(copy ["--doit=true"] "foo" "/tmp/")\n'
        '(copy ["--user=me" "--doit=true"] "foo" "/tmp/")\n'
        '(copy ["--doit=true"] "foo" "/tmp/")\n'
        '(copy "foo" "/tmp/")\n'
        '(cmd ["--doit"] "a" "b")\n'
        '(cmd ["--doit=true"] "a" "b")\n'
        '(cmd ["--doit"])\n'
    ),
    'health': (
        'FROM debian\n'
        'ADD check.sh main.sh /app/\n'
        'CMD /app/main.sh\n'
        'HEALTHCHECK\n'
        'HEALTHCHECK --interval=5s --timeout=3s --retries=3 \\\n'
        '  CMD /app/check.sh --quiet\n'
        'HEALTHCHECK CMD\n'
        'HEALTHCHECK   CMD   a b\n'
        'HEALTHCHECK --timeout=3s CMD ["foo"]\n'
        'HEALTHCHECK CONNECT TCP 7000\n'
        'HEALTHCHECK --start-period=0s --start-interval=0s --interval=5s --timeout=0s --retries=0 CMD ["foo"]\n'
        ,
        '(from "debian")\n'
        '(add "check.sh" "main.sh" "/app/")\n'
        '(cmd "/app/main.sh")\n'
        '(healthcheck)\n'
        '(healthcheck ["--interval=5s" "--timeout=3s" "--retries=3"] "CMD" "/app/check.sh --quiet")\n'
        '(healthcheck "CMD")\n'
        '(healthcheck "CMD" "a b")\n'
        '(healthcheck ["--timeout=3s"] "CMD" "foo")\n'
        '(healthcheck "CONNECT" "TCP 7000")\n'
        '(healthcheck ["--start-period=0s" "--start-interval=0s" "--interval=5s" "--timeout=0s" "--retries=0"] "CMD" "foo")\n'
    ),
    'json': (
        'CMD []\n'
        'CMD [""]\n'
        'CMD ["a"]\n'
        'CMD ["a","b"]\n'
        'CMD [ "a", "b" ]\n'
        'CMD [\t"a",\t"b"\t]\n'
        'CMD\t[\t"a",\t"b"\t]\t\n'
        'CMD ["abc 123", "♥", "☃", "\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0000"]\n'
        ,
        '(cmd)\n'
        '(cmd "")\n'
        '(cmd "a")\n'
        '(cmd "a" "b")\n'
        '(cmd "a" "b")\n'
        '(cmd "a" "b")\n'
        '(cmd "a" "b")\n'
        '(cmd "abc 123" "♥" "☃" "\\" \\\\ / \\b \\f \\n \\r \\t \\x00")\n'
    ),
    'jeztah-invalid-json-json-inside-string-double': (
        'CMD "[\\"echo\\", \\"Phew, I just managed to escaped those double quotes\\"]"\n'
        ,
        '(cmd "\\"[\\\\\\"echo\\\\\\", \\\\\\"Phew, I just managed to escaped those double quotes\\\\\\"]\\"")\n'
    ),
    'jeztah-invalid-json-json-inside-string': (
        'CMD \'["echo", "Well, JSON in a string is JSON too?"]\'\n'
        ,
        '(cmd "\'[\\"echo\\", \\"Well, JSON in a string is JSON too?\\"]\'")\n'
    ),
    'jeztah-invalid-json-single-quotes': (
        "CMD ['echo','single quotes are invalid JSON']\n"
        ,
        '(cmd "[\'echo\',\'single quotes are invalid JSON\']")\n'
    ),
    'jeztah-invalid-json-unterminated-bracket': (
        'CMD ["echo", "Please, close the brackets when you\'re done"\n'
        ,
        '(cmd "[\\"echo\\", \\"Please, close the brackets when you\'re done\\"")\n'
    ),
    'jeztah-invalid-json-unterminated-string': (
        'CMD ["echo", "look ma, no quote!]\n'
        ,
        '(cmd "[\\"echo\\", \\"look ma, no quote!]")\n'
    ),
    'kartar-entrypoint-oddities': (
        'FROM ubuntu:14.04\n'
        'LABEL maintainer James Turnbull "james@example.com"\n'
        'ENV REFRESHED_AT 2014-06-01\n'
        'RUN apt-get update\n'
        'RUN apt-get --no-install-recommends install -y redis-server redis-tools\n'
        'EXPOSE 6379\n'
        'ENTRYPOINT [ "/usr/bin/redis-server" ]\n'
        ,
        '(from "ubuntu:14.04")\n'
        '(label "maintainer" "James Turnbull \\"james@example.com\\"" "")\n'
        '(env "REFRESHED_AT" "2014-06-01" "")\n'
        '(run "apt-get update")\n'
        '(run "apt-get --no-install-recommends install -y redis-server redis-tools")\n'
        '(expose "6379")\n'
        '(entrypoint "/usr/bin/redis-server")\n'
    ),
    'lk4d4-the-edge-case-generator': (
        'FROM busybox:buildroot-2014.02\n'
        '\n'
        'LABEL maintainer docker <docker@docker.io>\n'
        '\n'
        'ONBUILD RUN ["echo", "test"]\n'
        'ONBUILD RUN echo test\n'
        'ONBUILD COPY . /\n'
        '\n'
        '\n'
        '# RUN Commands \\\n'
        '# linebreak in comment \\\n'
        'RUN ["ls", "-la"]\n'
        'RUN ["echo", "\'1234\'"]\n'
        'RUN echo "1234"\n'
        'RUN echo 1234\n'
        "RUN echo '1234' && \\\n"
        '    echo "456" && \\\n'
        '    echo 789\n'
        "RUN    sh -c 'echo root:testpass \\\n"
        "        > /tmp/passwd'\n"
        'RUN mkdir -p /test /test2 /test3/test\n'
        '\n'
        '# ENV \\\n'
        'ENV SCUBA 1 DUBA 3\n'
        'ENV SCUBA "1 DUBA 3"\n'
        '\n'
        '# CMD \\\n'
        'CMD ["echo", "test"]\n'
        'CMD echo test\n'
        'CMD echo "test"\n'
        "CMD echo 'test'\n"
        "CMD echo 'test' | wc -\n"
        '\n'
        '#EXPOSE\\\n'
        'EXPOSE 3000\n'
        'EXPOSE 9000 5000 6000\n'
        '\n'
        'USER docker\n'
        'USER docker:root\n'
        '\n'
        'VOLUME ["/test"]\n'
        'VOLUME ["/test", "/test2"]\n'
        'VOLUME /test3\n'
        '\n'
        'WORKDIR /test\n'
        '\n'
        'ADD . /\n'
        'COPY . copy\n'
        ,
        '(from "busybox:buildroot-2014.02")\n'
        '(label "maintainer" "docker <docker@docker.io>" "")\n'
        '(onbuild (run "echo" "test"))\n'
        '(onbuild (run "echo test"))\n'
        '(onbuild (copy "." "/"))\n'
        '(run "ls" "-la")\n'
        '(run "echo" "\'1234\'")\n'
        '(run "echo \\"1234\\"")\n'
        '(run "echo 1234")\n'
        '(run "echo \'1234\' &&     echo \\"456\\" &&     echo 789")\n'
        '(run "sh -c \'echo root:testpass         > /tmp/passwd\'")\n'
        '(run "mkdir -p /test /test2 /test3/test")\n'
        '(env "SCUBA" "1 DUBA 3" "")\n'
        '(env "SCUBA" "\\"1 DUBA 3\\"" "")\n'
        '(cmd "echo" "test")\n'
        '(cmd "echo test")\n'
        '(cmd "echo \\"test\\"")\n'
        '(cmd "echo \'test\'")\n'
        '(cmd "echo \'test\' | wc -")\n'
        '(expose "3000")\n'
        '(expose "9000" "5000" "6000")\n'
        '(user "docker")\n'
        '(user "docker:root")\n'
        '(volume "/test")\n'
        '(volume "/test" "/test2")\n'
        '(volume "/test3")\n'
        '(workdir "/test")\n'
        '(add "." "/")\n'
        '(copy "." "copy")\n'
    ),
    'multiple-volumes': (
        'FROM foo\n'
        '\n'
        'VOLUME /opt/nagios/var /opt/nagios/etc /opt/nagios/libexec /var/log/apache2 /usr/share/snmp/mibs\n'
        ,
        '(from "foo")\n'
        '(volume "/opt/nagios/var" "/opt/nagios/etc" "/opt/nagios/libexec" "/var/log/apache2" "/usr/share/snmp/mibs")\n'
    ),
    'trailing-backslash': (
        '# https://github.com/docker/for-win/issues/5254\n'
        '\n'
        'FROM hello-world\n'
        '\n'
        'ENV A path\n'
        'ENV B another\\\\path\n'
        'ENV C trailing\\\\backslash\\\\\n'
        'ENV D This should not be appended to C\n'
        'ENV E hello\\\n'
        '\\\n'
        'world\n'
        'ENV F hello\\\n'
        ' \\\n'
        'world\n'
        'ENV G hello \\\n'
        '\\\n'
        'world\n'
        ,
        '(from "hello-world")\n'
        '(env "A" "path" "")\n'
        '(env "B" "another\\\\\\\\path" "")\n'
        '(env "C" "trailing\\\\\\\\backslash\\\\\\\\" "")\n'
        '(env "D" "This should not be appended to C" "")\n'
        '(env "E" "helloworld" "")\n'
        '(env "F" "hello world" "")\n'
        '(env "G" "hello world" "")\n'
    ),
    'mumble': (
        'FROM ubuntu:14.04\n'
        '\n'
        'RUN apt-get update && apt-get install libcap2-bin mumble-server -y\n'
        '\n'
        'ADD ./mumble-server.ini /etc/mumble-server.ini\n'
        '\n'
        'CMD /usr/sbin/murmurd\n'
        ,
        '(from "ubuntu:14.04")\n'
        '(run "apt-get update && apt-get install libcap2-bin mumble-server -y")\n'
        '(add "./mumble-server.ini" "/etc/mumble-server.ini")\n'
        '(cmd "/usr/sbin/murmurd")\n'
    ),
    'nginx': (
        'FROM ubuntu:14.04\n'
        'LABEL maintainer Erik Hollensbe <erik@hollensbe.org>\n'
        '\n'
        'RUN apt-get update && apt-get install nginx-full -y\n'
        'RUN rm -rf /etc/nginx\n'
        'ADD etc /etc/nginx\n'
        'RUN chown -R root:root /etc/nginx\n'
        'RUN /usr/sbin/nginx -qt\n'
        'RUN mkdir /www\n'
        '\n'
        'CMD ["/usr/sbin/nginx"]\n'
        '\n'
        'VOLUME /www\n'
        'EXPOSE 80\n'
        ,
        '(from "ubuntu:14.04")\n'
        '(label "maintainer" "Erik Hollensbe <erik@hollensbe.org>" "")\n'
        '(run "apt-get update && apt-get install nginx-full -y")\n'
        '(run "rm -rf /etc/nginx")\n'
        '(add "etc" "/etc/nginx")\n'
        '(run "chown -R root:root /etc/nginx")\n'
        '(run "/usr/sbin/nginx -qt")\n'
        '(run "mkdir /www")\n'
        '(cmd "/usr/sbin/nginx")\n'
        '(volume "/www")\n'
        '(expose "80")\n'
    ),
}


def _go_quote(s: str) -> str:
    """Go's strconv.Quote, for the characters these files hold."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch):02x}")
    return '"' + "".join(out) + '"'


def _dump(inst: Instruction) -> str:
    """buildkit's Node.Dump() of one instruction, without ENV/LABEL separators."""
    out = inst.cmd
    if inst.flags:
        words = ["--" + k + ("" if v is None else "=" + v) for k, v in inst.flags]
        out += " [" + " ".join(_go_quote(w) for w in words) + "]"
    if inst.sub is not None:
        return f"{out} ({_dump(inst.sub)})"
    return " ".join([out, *(_go_quote(a) for a in inst.args)])


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"')


def _without_separators(result_line: str) -> str:
    """An ENV/LABEL dump line with every third (separator) string removed."""
    head = result_line[:result_line.index(" ")]
    tokens = _TOKEN.findall(result_line)
    kept = [t for i, t in enumerate(tokens) if i % 3 != 2]
    assert all(ast.literal_eval(t) in ("", "=") for i, t in enumerate(tokens) if i % 3 == 2)
    return " ".join([head, *kept]) + ")"


@pytest.mark.parametrize("name", sorted(BUILDKIT_TESTFILES))
def test_buildkit_testfiles(name: str) -> None:
    dockerfile, result = BUILDKIT_TESTFILES[name]
    got = [f"({_dump(i)})" for i in parse(dockerfile).instructions]
    expected = [_without_separators(line) if line.startswith(("(env", "(label")) else line
                for line in result.splitlines()]
    assert got == expected


# -- hand-written cases: (Dockerfile, [(cmd, args, json, flags, original, line)]) -----------------

I = tuple  # noqa: E741 - one expected instruction

CASES: dict[str, tuple[str, list[tuple[object, ...]]]] = {
    # docs/reference.md, "escape": with `# escape=`` a trailing backslash is an ordinary char.
    "reference-escape-backtick": (
        "# escape=`\n\nFROM microsoft/nanoserver\nCOPY testfile.txt c:\\\nRUN dir c:\\\n",
        [I(("from", ("microsoft/nanoserver",), False, (), "FROM microsoft/nanoserver", 3)),
         I(("copy", ("testfile.txt", "c:\\"), False, (), "COPY testfile.txt c:\\", 4)),
         I(("run", ("dir c:\\",), False, (), "RUN dir c:\\", 5))]),
    # parser.go trimContinuationCharacter: the continuation line keeps its indentation and the
    # pieces are joined as they are (Node.Original, what `Step N/M :` prints).
    "continuation-original": (
        "FROM a\nRUN apt-get update && \\\n    apt-get install x\n",
        [I(("from", ("a",), False, (), "FROM a", 1)),
         I(("run", ("apt-get update &&     apt-get install x",), False, (),
            "RUN apt-get update &&     apt-get install x", 2))]),
    "continuation-backtick": (
        "# escape=`\nFROM a\nRUN echo a `\n  b `  \n`\nc\n",
        [I(("from", ("a",), False, (), "FROM a", 2)),
         I(("run", ("echo a   b c",), False, (), "RUN echo a   b c", 3))]),
    # parser_test.go TestParseWarnsOnEmptyContinutationLine: comments inside a continuation
    # are dropped, indented ones too.
    "continuation-comments": (
        "FROM a\nRUN non-indented \\\n# this is a comment\n   after-comment\n"
        "RUN indented \\\n    # this is an indented comment\n    comment\n",
        [I(("from", ("a",), False, (), "FROM a", 1)),
         I(("run", ("non-indented    after-comment",), False, (),
            "RUN non-indented    after-comment", 2)),
         I(("run", ("indented     comment",), False, (), "RUN indented     comment", 5))]),
    # Instructions are case-insensitive (reference.md "Format"); leading whitespace ignored.
    "case-insensitive": (
        "from a AS b\n  rUn echo hi\nCmd [\"x\"]\n",
        [I(("from", ("a", "AS", "b"), False, (), "from a AS b", 1)),
         I(("run", ("echo hi",), False, (), "rUn echo hi", 2)),
         I(("cmd", ("x",), True, (), 'Cmd ["x"]', 3))]),
    # split_command.go extractBuilderFlags: quotes and escapes removed from flags, `--` ends them,
    # bare flags have no value, repeats are kept.
    "flags": (
        'FROM --platform=linux/amd64 a AS b\n'
        'COPY --from=b --chown="11:22" --link /x /y\n'
        'RUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t make\n'
        'COPY --link -- --weird /z\n',
        [I(("from", ("a", "AS", "b"), False, (("platform", "linux/amd64"),),
            "FROM --platform=linux/amd64 a AS b", 1)),
         I(("copy", ("/x", "/y"), False, (("from", "b"), ("chown", "11:22"), ("link", None)),
            'COPY --from=b --chown="11:22" --link /x /y', 2)),
         I(("run", ("make",), False,
            (("mount", "type=cache,target=/c"), ("mount", "type=tmpfs,target=/t")),
            "RUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t make", 3)),
         I(("copy", ("--weird", "/z"), False, (("link", None),), "COPY --link -- --weird /z", 4))]),
    # line_parsers.go parseMaybeJSON: not a JSON array of strings -> shell form, verbatim.
    "json-fallback": (
        "FROM a\nCMD [\"a\", 'b']\nENTRYPOINT [\"a\"] extra\nRUN [ \"a\", \"b\" ]\nVOLUME [\"/v\"]\n"
        "VOLUME /a /b\nSHELL [\"/bin/bash\", \"-c\"]\n",
        [I(("from", ("a",), False, (), "FROM a", 1)),
         I(("cmd", ("[\"a\", 'b']",), False, (), "CMD [\"a\", 'b']", 2)),
         I(("entrypoint", ('["a"] extra',), False, (), 'ENTRYPOINT ["a"] extra', 3)),
         I(("run", ("a", "b"), True, (), 'RUN [ "a", "b" ]', 4)),
         I(("volume", ("/v",), True, (), 'VOLUME ["/v"]', 5)),
         I(("volume", ("/a", "/b"), False, (), "VOLUME /a /b", 6)),
         I(("shell", ("/bin/bash", "-c"), True, (), 'SHELL ["/bin/bash", "-c"]', 7))]),
    # line_parsers_test.go TestParseNameVal{Old,New}Format; testfiles/env for the quoting.
    "env-label-forms": (
        'FROM a\nLABEL foo bar\nLABEL foo=bar thing=star\nENV a b c\nENV x="y z" w=1\\ 2\n',
        [I(("from", ("a",), False, (), "FROM a", 1)),
         I(("label", ("foo", "bar"), False, (), "LABEL foo bar", 2)),
         I(("label", ("foo", "bar", "thing", "star"), False, (), "LABEL foo=bar thing=star", 3)),
         I(("env", ("a", "b c"), False, (), "ENV a b c", 4)),
         I(("env", ("x", '"y z"', "w", "1\\ 2"), False, (), 'ENV x="y z" w=1\\ 2', 5))]),
    # parse_test.go TestCommandsExactlyOneArgument / AtLeastOneArgument: the parser accepts
    # instructions without arguments (the builder rejects them).
    "no-arguments": (
        "MAINTAINER\nWORKDIR\nENV\nHEALTHCHECK\n",
        [I(("maintainer", (), False, (), "MAINTAINER", 1)),
         I(("workdir", (), False, (), "WORKDIR", 2)),
         I(("env", (), False, (), "ENV", 3)),
         I(("healthcheck", (), False, (), "HEALTHCHECK", 4))]),
    # testfiles/health and instructions TestHealthCheckCmd.
    "healthcheck": (
        "FROM a\nHEALTHCHECK NONE\nHEALTHCHECK --interval=5s CMD curl -f http://x/ || exit 1\n"
        'HEALTHCHECK CMD ["true"]\n',
        [I(("from", ("a",), False, (), "FROM a", 1)),
         I(("healthcheck", ("NONE",), False, (), "HEALTHCHECK NONE", 2)),
         I(("healthcheck", ("CMD", "curl -f http://x/ || exit 1"), False,
            (("interval", "5s"),), "HEALTHCHECK --interval=5s CMD curl -f http://x/ || exit 1",
            3)),
         I(("healthcheck", ("CMD", "true"), True, (), 'HEALTHCHECK CMD ["true"]', 4))]),
    # WORKDIR/USER/STOPSIGNAL/MAINTAINER keep the whole (trimmed) rest: parseString.
    "whole-rest": (
        "FROM a\nWORKDIR /a b  \nUSER  1:2\nSTOPSIGNAL SIGKILL\nEXPOSE 80/tcp  443\n"
        'ARG abc="123 456" def\n',
        [I(("from", ("a",), False, (), "FROM a", 1)),
         I(("workdir", ("/a b",), False, (), "WORKDIR /a b  ", 2)),
         I(("user", ("1:2",), False, (), "USER  1:2", 3)),
         I(("stopsignal", ("SIGKILL",), False, (), "STOPSIGNAL SIGKILL", 4)),
         I(("expose", ("80/tcp", "443"), False, (), "EXPOSE 80/tcp  443", 5)),
         I(("arg", ('abc="123 456"', "def"), False, (), 'ARG abc="123 456" def', 6))]),
    # Byte-order mark and CRLF line ends (parser.go discardBOM, trimNewline).
    "bom-crlf": (
        "\ufeffFROM a\r\nRUN x \\\r\n  y\r\n",
        [I(("from", ("a",), False, (), "FROM a", 1)),
         I(("run", ("x   y",), False, (), "RUN x   y", 2))]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cases(name: str) -> None:
    text, expected = CASES[name]
    got = [(i.cmd, i.args, i.json, i.flags, i.original, i.line)
           for i in parse(text).instructions]
    assert got == expected


def test_onbuild() -> None:
    # line_parsers.go parseSubCommand; instructions parseOnBuild keeps the original without
    # the ONBUILD keyword as the trigger expression.
    df = parse("FROM a\nONBUILD RUN --mount=type=tmpfs,target=/t echo  hi\n"
               'onbuild copy ["a", "b"]\n')
    run, copy = df.instructions[1], df.instructions[2]
    assert run.cmd == "onbuild" and run.args == ("RUN --mount=type=tmpfs,target=/t echo  hi",)
    assert run.sub is not None
    assert (run.sub.cmd, run.sub.args, run.sub.flags, run.sub.line) == (
        "run", ("echo  hi",), (("mount", "type=tmpfs,target=/t"),), 2)
    assert copy.args == ('copy ["a", "b"]',)
    assert copy.sub is not None and copy.sub.json and copy.sub.args == ("a", "b")


def test_onbuild_heredoc() -> None:
    # parser.go canContainHeredoc: ONBUILD of RUN/COPY/ADD takes heredocs.
    df = parse("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\nRUN true\n")
    onbuild = df.instructions[1]
    assert (onbuild.line, onbuild.end_line) == (2, 4)
    assert onbuild.heredocs == (Heredoc("EOF", "echo hi\n", True, False),)
    assert onbuild.sub is not None and onbuild.sub.heredocs == onbuild.heredocs
    assert df.instructions[2].line == 5


# -- directives ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "directives", "escape"), [
    # directives_test.go TestDirectives: a second, unknown key ends the directives.
    ("#escape=\\\n# key = FOO bar\n\n# smth\nFROM a\n", {"escape": "\\"}, "\\"),
    ("# EScape=`\n# KEY = FOO bar\n\n# smth\nFROM a\n", {"escape": "`"}, "`"),
    # reference.md "Parser directives": whitespace variants, all the same.
    ("#\t  sYnTaX=docker/dockerfile:1\nFROM a\n", {"syntax": "docker/dockerfile:1"}, "\\"),
    ("# syntax = docker/dockerfile:1 \n# escape = `\n\nFROM a\n",
     {"syntax": "docker/dockerfile:1", "escape": "`"}, "`"),
    ("# check=skip=JSONArgsRecommended\nFROM a\n", {"check": "skip=JSONArgsRecommended"}, "\\"),
    # ... treated as comments after another comment, a blank line or an instruction.
    ("# About my dockerfile\n# escape=`\nFROM a\n", {}, "\\"),
    ("# unknowndirective=value\n# syntax=value\nFROM a\n", {}, "\\"),
    ("\n# escape=`\nFROM a\n", {}, "\\"),
    ("FROM a\n# escape=`\n", {}, "\\"),
])
def test_directives(text: str, directives: dict[str, str], escape: str) -> None:
    df = parse(text)
    assert df.directives == directives
    assert df.escape == escape


def test_escape_after_comment_is_a_comment() -> None:
    # testfiles/escape-after-comment: the backslash stays the continuation character.
    df = parse("# Comment\n# escape = `\n\nFROM image\nENV GOPATH \\\n\\go")
    assert df.instructions[1].args == ("GOPATH", "\\go")


# -- heredocs --------------------------------------------------------------------------------------

# parser_heredoc_test.go TestParseExtractsHeredoc (without its `USER <<INVALID` / `INVALID`
# pair: buildkit's parser ignores the unknown INVALID, berth reports it). Content for `<<-` has
# its leading tabs removed, as buildkit does before using it (ChompHeredocContent).
HEREDOC_DOCKERFILE = """
FROM alpine:3.6

ENV NAME=me

RUN ls

RUN <<EMPTY
EMPTY

RUN 3<<EMPTY2
EMPTY2

RUN "<<NOHEREDOC"

RUN <<INDENT
\tfoo
\tbar
INDENT

RUN <<-UNINDENT
\tbaz
\tquux
UNINDENT

RUN <<-UNINDENT2
\tbaz
\tquux
\tUNINDENT2

RUN <<-EXPAND
\texpand $NAME
EXPAND

RUN <<-'NOEXPAND'
\tdon't expand $NAME
NOEXPAND

RUN <<COPY
echo hello world
echo foo bar
COPY

RUN <<COMMENT
# internal comment
echo hello world
echo foo bar # trailing comment
COMMENT

RUN --mount=type=cache,target=/foo <<MOUNT
echo hello
MOUNT

COPY <<FILE1 <<FILE2 /dest
content 1
FILE1
content 2
FILE2

COPY <<EOF /quotes
"foo"
'bar'
EOF

COPY <<X <<Y /dest
Y
X
X
Y

RUN <<COMPLEX python3
print('hello world')
COMPLEX

COPY <<file.txt /dest
hello world
file.txt

RUN <<eo'f'
echo foo
eof

RUN <<eo\\'f
echo foo
eo'f

RUN <<'e'o\\'f
echo foo
eo'f

RUN <<'one two'
echo bar
one two

RUN <<$EOF
$EOF

RUN <<  EOF
EOF

RUN <<  EOF  > foo
EOF
\t"""

H = Heredoc
HEREDOC_EXPECTED: list[tuple[Heredoc, ...]] = [
    (),  # ENV NAME=me
    (),  # RUN ls
    (H("EMPTY", "", True, False),),
    (H("EMPTY2", "", True, False),),
    (),  # RUN "<<NOHEREDOC"
    (H("INDENT", "\tfoo\n\tbar\n", True, False),),
    (H("UNINDENT", "baz\nquux\n", True, True),),
    (H("UNINDENT2", "baz\nquux\n", True, True),),
    (H("EXPAND", "expand $NAME\n", True, True),),
    (H("NOEXPAND", "don't expand $NAME\n", False, True),),
    (H("COPY", "echo hello world\necho foo bar\n", True, False),),
    (H("COMMENT", "# internal comment\necho hello world\necho foo bar # trailing comment\n",
       True, False),),
    (H("MOUNT", "echo hello\n", True, False),),
    (H("FILE1", "content 1\n", True, False), H("FILE2", "content 2\n", True, False)),
    (H("EOF", "\"foo\"\n'bar'\n", True, False),),
    (H("X", "Y\n", True, False), H("Y", "X\n", True, False)),
    (H("COMPLEX", "print('hello world')\n", True, False),),
    (H("file.txt", "hello world\n", True, False),),
    (H("eof", "echo foo\n", False, False),),
    (H("eo'f", "echo foo\n", True, False),),
    (H("eo'f", "echo foo\n", False, False),),
    (H("one two", "echo bar\n", False, False),),
    (H("$EOF", "", True, False),),
    (H("EOF", "", True, False),),
    (H("EOF", "", True, False),),
]


def test_heredocs_buildkit_table() -> None:
    insts = parse(HEREDOC_DOCKERFILE).instructions[1:]
    assert [i.heredocs for i in insts] == HEREDOC_EXPECTED
    # The instruction's own line keeps the heredoc markers; the bodies are not in args.
    complex_ = insts[16]
    assert complex_.args == ("<<COMPLEX python3",) and complex_.original == "RUN <<COMPLEX python3"
    files = insts[13]
    assert files.args == ("<<FILE1", "<<FILE2", "/dest")
    assert (files.line, files.end_line) == (54, 58)


def test_heredocs_reference_examples() -> None:
    # docs/reference.md "Here-Documents".
    df = parse("# syntax=docker/dockerfile:1\nFROM alpine\n"
               "RUN <<FILE1 cat > file1 && <<FILE2 cat > file2\nI am\nfirst\nFILE1\nI am\n"
               "second\nFILE2\n"
               'COPY <<-"EOT" /script.sh\n  echo "hello ${FOO}"\nEOT\n'
               "ENTRYPOINT ash /script.sh\n")
    run, copy, entry = df.instructions[1:]
    assert run.args == ("<<FILE1 cat > file1 && <<FILE2 cat > file2",)
    assert run.heredocs == (H("FILE1", "I am\nfirst\n", True, False),
                            H("FILE2", "I am\nsecond\n", True, False))
    assert (run.line, run.end_line) == (3, 9)
    assert copy.heredocs == (H("EOT", '  echo "hello ${FOO}"\n', False, True),)
    assert copy.args == ('<<-"EOT"', "/script.sh")
    assert (entry.line, entry.args) == (13, ("ash /script.sh",))


@pytest.mark.parametrize(("line", "names"), [
    # parser_heredoc_test.go TestHeredocsFromLine
    ("RUN <<EOF", ["EOF"]),
    ("RUN <<-EOF", ["EOF"]),
    # The Go test lists ["EOF"] for "RUN <<- EOF", but its loop runs over what was found, and
    # nothing is: the line lexer splits "<<-" from "EOF" (whitespace after "<<" only is kept).
    ("RUN <<- EOF", []),
    ("RUN << -EOF", ["-EOF"]),
    ("RUN <<'EOF'", ["EOF"]),
    ("RUN 4<<EOF", ["EOF"]),
    ("RUN <<EOF <<EOF2", ["EOF", "EOF2"]),
    ("RUN '<<EOF'", []),
    ('RUN "<<EOF"', []),
    # TestParseJSONHeredoc: no heredocs in JSON form.
    ('RUN ["<<EOF"]', []),
    ("RUN [\"<<'EOF'\"]", []),
    # only RUN, COPY and ADD take heredocs
    ("USER <<EOF", []),
])
def test_heredoc_names(line: str, names: list[str]) -> None:
    bodies = "".join(f"x\n{n}\n" for n in names)
    inst = parse(f"FROM a\n{line}\n{bodies}").instructions[1]
    assert [h.name for h in inst.heredocs] == names


@pytest.mark.parametrize("word", [
    # parser_heredoc_test.go TestParseHeredocHelpers: valid ones, all named EOF
    "<<EOF", "<<'EOF'", '<<"EOF"', "<<-EOF", "<<-'EOF'", '<<-"EOF"', '<<EO"F"', "<< EOF",
    "<<- EOF",
])
def test_parse_heredoc_word_valid(word: str) -> None:
    doc = parse_heredoc_word(word)
    assert doc is not None and doc.name == "EOF"
    assert doc.expand == ("'" not in word and '"' not in word)
    assert doc.chomp == word.startswith("<<-")


@pytest.mark.parametrize("word", ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"])
def test_parse_heredoc_word_not_heredoc(word: str) -> None:
    assert parse_heredoc_word(word) is None


@pytest.mark.parametrize("word", ["<<'EOF", '<<"EOF', "<<EOF'", '<<EOF"'])
def test_parse_heredoc_word_invalid(word: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_heredoc_word(word)


# -- lines, warnings -------------------------------------------------------------------------------

# parser/testfile-line/Dockerfile (TestParseIncludesLineNumbers)
LINE_DOCKERFILE = (
    "# ESCAPE=\\\n\n\n\nFROM brimstone/ubuntu:14.04\n\n\n"
    "# TORUN -v /var/run/docker.sock:/var/run/docker.sock\n\n\nENV GOPATH \\\n/go\n\n\n\n"
    "# Install the packages we need, clean up after them and us\n"
    "RUN apt-get update \\\n"
    "\t&& dpkg -l | awk '/^ii/ {print $2}' > /tmp/dpkg.clean \\\n\n\n"
    "    && apt-get --no-install-recommends install -y git golang ca-certificates \\\n"
    "    && apt-get clean \\\n    && rm -rf /var/lib/apt/lists \\\n\n"
    "\t&& go get -v github.com/brimstone/consuldock \\\n"
    "    && mv $GOPATH/bin/consuldock /usr/local/bin/consuldock \\\n\n"
    "\t&& dpkg -l | awk '/^ii/ {print $2}' > /tmp/dpkg.dirty \\\n"
    "\t&& apt-get remove --purge -y $(diff /tmp/dpkg.clean /tmp/dpkg.dirty | awk '/^>/ "
    "{print $2}') \\\n"
    "\t&& rm /tmp/dpkg.* \\\n\t&& rm -rf $GOPATH\n\n\n\n"
)


def test_line_numbers() -> None:
    df = parse(LINE_DOCKERFILE)
    assert [(i.line, i.end_line) for i in df.instructions] == [(5, 5), (11, 12), (17, 31)]
    assert df.directives == {"escape": "\\"}
    assert len(df.warnings) == 1  # the blank lines inside the RUN continuation


def test_empty_continuation_warnings() -> None:
    # parser_test.go TestParseWarnsOnEmptyContinutationLine
    df = parse("\nFROM alpine:3.6\n\nRUN valid \\\n    continuation\n\nRUN something \\\n\n"
               "    following \\\n\n    more\n\nRUN another \\\n\n    thing\n\n"
               "RUN non-indented \\\n# this is a comment\n   after-comment\n\n"
               "RUN indented \\\n    # this is an indented comment\n    comment\n\t")
    assert len(df.warnings) == 2
    assert "Empty continuation line found in" in df.warnings[0]
    assert "RUN something     following     more" in df.warnings[0]
    assert "RUN another     thing" in df.warnings[1]


def test_bytes_and_flag_value() -> None:
    df = parse(b"FROM a\nCOPY --chown=1 --chown=2 --link x y\n")
    copy = df.instructions[1]
    assert flag_value(copy, "chown") == "2"
    assert flag_value(copy, "link") is None and flag_value(copy, "from") is None


# -- errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "line", "message"), [
    # instructions/parse_test.go (TestErrorCases): the instruction as written
    ("FROM a\n\nFOO bar\n", 3, "unknown instruction: FOO"),
    ("foo bar", 1, "unknown instruction: foo"),
    ("ONBUILD", 1, "ONBUILD requires at least one argument"),
    ("ONBUILD FROM scratch", 1, "FROM isn't allowed as an ONBUILD trigger"),
    ("ONBUILD MAINTAINER me", 1, "MAINTAINER isn't allowed as an ONBUILD trigger"),
    ("FROM a\nONBUILD ONBUILD RUN touch foobar", 2,
     "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    # instructions/parse.go parseShell / errors_unix.go
    ("FROM a\nSHELL /bin/sh -c\n", 2, "SHELL requires the arguments to be in JSON form"),
    ("FROM a\nSHELL []\n", 2, "SHELL requires at least one argument"),
    # testfiles-negative/env_no_value, shykes-nested-json
    ("FROM busybox\n\nENV PATH\n", 3, "ENV must have two arguments"),
    ('CMD [ "echo", [ "nested json" ] ]\n', 1,
     "when using JSON array syntax, arrays must be comprised of strings only"),
    # line_parsers.go parseNameVal
    ("FROM a\nLABEL a=b c\n", 2,
     "Syntax error - can't find = in \"c\". Must be of the form: name=value"),
    # parser.go: unterminated heredoc, reported at the instruction's first line
    ("FROM a\nRUN <<EOF\necho hi\n", 2, "unterminated heredoc"),
    ("FROM a\nCOPY <<A <<B /x\na\nA\nb\n", 2, "unterminated heredoc"),
    # directives.go
    ("# escape=`\n# escape=\\\nFROM a\n", 2, "only one escape parser directive can be used"),
    ("# escape=x\nFROM a\n", 1, "invalid escape token 'x' does not match ` or \\"),
])
def test_errors(text: str, line: int, message: str) -> None:
    with pytest.raises(DockerfileError) as info:
        parse(text, filename="df")
    err = info.value
    assert (err.line, err.problem, err.filename) == (line, message, "df")
    assert str(err) == f"df:{line}: {message}"
    assert isinstance(err, InvalidArgument)


@pytest.mark.parametrize("text", [
    "",  # testfiles-negative/empty_dockerfile
    "# Hello\n# These are just comments\n\n",  # testfiles-negative/only_comments
    "\n  \n\t\n",
])
def test_no_instructions(text: str) -> None:
    with pytest.raises(DockerfileError, match="has no instructions"):
        parse(text)
