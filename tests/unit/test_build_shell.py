"""Shell-word expansion against buildkit's lexer tests (moby/buildkit frontend/dockerfile/shell).

ENV_VAR_TEST and WORDS_TEST are the files `envVarTest` and `wordsTest` copied verbatim; the
tests read them as lex_test.go's TestShellParser4EnvVars and TestShellParser4Words do. The
other tables come from lex_test.go (TestShellParserMandatoryEnvVars, TestProcessWithMatches,
TestProcessWithMatchesPlatform, TestConvertShellPatternToRegex).
"""

from __future__ import annotations

import pytest

from berth.build.shell import ShellError, ShellLex
from berth.errors import InvalidArgument

ENV_VAR_TEST = (
    'A|hello                    |     hello\n'
    "A|he'll'o                  |     hello\n"
    "A|he'llo                   |     error\n"
    "A|he\\'llo                  |     he'llo\n"
    "A|he\\\\'llo                 |     error\n"
    'A|abc\\tdef                 |     abctdef\n'
    'A|"abc\\tdef"               |     abc\\tdef\n'
    'A|"abc\\\\tdef"              |     abc\\tdef\n'
    "A|'abc\\tdef'               |     abc\\tdef\n"
    'A|hello\\                   |     hello\n'
    'A|hello\\\\                  |     hello\\\n'
    'A|"hello                   |     error\n'
    'A|"hello\\"                 |     error\n'
    'A|"hel\'lo"                 |     hel\'lo\n'
    "A|'hello                   |     error\n"
    "A|'hello\\'                 |     hello\\\n"
    "A|'hello\\there'            |     hello\\there\n"
    "A|'hello\\\\there'           |     hello\\\\there\n"
    'A|"\'\'"                     |     \'\'\n'
    'A|$.                       |     $.\n'
    'A|he$1x                    |     hex\n'
    'A|he$.x                    |     he$.x\n'
    '# Next one is different on Windows as $pwd==$PWD\n'
    'U|he$pwd.                  |     he.\n'
    'W|he$pwd.                  |     he/home.\n'
    'A|he$PWD                   |     he/home\n'
    'A|he\\$PWD                  |     he$PWD\n'
    'A|he\\\\$PWD                 |     he\\/home\n'
    'A|"he\\$PWD"                |     he$PWD\n'
    'A|"he\\\\$PWD"               |     he\\/home\n'
    'A|\\${}                     |     ${}\n'
    'A|\\${}aaa                  |     ${}aaa\n'
    'A|he\\${}                   |     he${}\n'
    'A|he\\${}xx                 |     he${}xx\n'
    'A|${}                      |     error\n'
    'A|${}aaa                   |     error\n'
    'A|he${}                    |     error\n'
    'A|he${}xx                  |     error\n'
    'A|he${hi}                  |     he\n'
    'A|he${hi}xx                |     hexx\n'
    'A|he${PWD}                 |     he/home\n'
    'A|he${.}                   |     error\n'
    'A|he${XXX:-000}xx          |     he000xx\n'
    'A|he${PWD:-000}xx          |     he/homexx\n'
    'A|he${XXX:-$PWD}xx         |     he/homexx\n'
    'A|he${XXX:-${PWD:-yyy}}xx  |     he/homexx\n'
    'A|he${XXX:-${YYY:-yyy}}xx  |     heyyyxx\n'
    'A|he${XXX:YYY}             |     error\n'
    'A|he${XXX?}                |     error\n'
    'A|he${XXX:?}               |     error\n'
    'A|he${PWD?}                |     he/home\n'
    'A|he${PWD:?}               |     he/home\n'
    'A|he${NULL?}               |     he\n'
    'A|he${NULL:?}              |     error\n'
    'A|he${XXX:+${PWD}}xx       |     hexx\n'
    'A|he${PWD:+${XXX}}xx       |     hexx\n'
    'A|he${PWD:+${SHELL}}xx     |     hebashxx\n'
    'A|he${XXX:+000}xx          |     hexx\n'
    'A|he${PWD:+000}xx          |     he000xx\n'
    "A|'he${XX}'                |     he${XX}\n"
    'A|"he${PWD}"               |     he/home\n'
    'A|"he\'$PWD\'"               |     he\'/home\'\n'
    'A|"$PWD"                   |     /home\n'
    "A|'$PWD'                   |     $PWD\n"
    "A|'\\$PWD'                  |     \\$PWD\n"
    'A|\'"hello"\'                |     "hello"\n'
    'A|he\\$PWD                  |     he$PWD\n'
    'A|"he\\$PWD"                |     he$PWD\n'
    "A|'he\\$PWD'                |     he\\$PWD\n"
    'A|he${PWD                  |     error\n'
    'A|he${PWD:=000}xx          |     error\n'
    'A|he${PWD:+${PWD}:}xx      |     he/home:xx\n'
    'A|he${XXX:-\\$PWD:}xx       |     he$PWD:xx\n'
    'A|he${XXX:-\\${PWD}z}xx     |     he${PWDz}xx\n'
    'A|안녕하세요                 |     안녕하세요\n'
    "A|안'녕'하세요               |     안녕하세요\n"
    "A|안'녕하세요                |     error\n"
    "A|안녕\\'하세요               |     안녕'하세요\n"
    "A|안\\\\'녕하세요              |     error\n"
    'A|안녕\\t하세요               |     안녕t하세요\n'
    'A|"안녕\\t하세요"             |     안녕\\t하세요\n'
    "A|'안녕\\t하세요              |     error\n"
    'A|안녕하세요\\                |     안녕하세요\n'
    'A|안녕하세요\\\\               |     안녕하세요\\\n'
    'A|"안녕하세요                |     error\n'
    'A|"안녕하세요\\"              |     error\n'
    'A|"안녕\'하세요"              |     안녕\'하세요\n'
    "A|'안녕하세요                |     error\n"
    "A|'안녕하세요\\'              |     안녕하세요\\\n"
    'A|안녕$1x                    |     안녕x\n'
    'A|안녕$.x                    |     안녕$.x\n'
    '# Next one is different on Windows as $pwd==$PWD\n'
    'U|안녕$pwd.                  |     안녕.\n'
    'W|안녕$pwd.                  |     안녕/home.\n'
    'A|안녕$PWD                   |     안녕/home\n'
    'A|안녕\\$PWD                  |     안녕$PWD\n'
    'A|안녕\\\\$PWD                 |     안녕\\/home\n'
    'A|안녕\\${}                   |     안녕${}\n'
    'A|안녕\\${}xx                 |     안녕${}xx\n'
    'A|안녕${}                    |     error\n'
    'A|안녕${}xx                  |     error\n'
    'A|안녕${hi}                  |     안녕\n'
    'A|안녕${hi}xx                |     안녕xx\n'
    'A|안녕${PWD}                 |     안녕/home\n'
    'A|안녕${.}                   |     error\n'
    'A|안녕${XXX:-000}xx          |     안녕000xx\n'
    'A|안녕${PWD:-000}xx          |     안녕/homexx\n'
    'A|안녕${XXX:-$PWD}xx         |     안녕/homexx\n'
    'A|안녕${XXX:-${PWD:-yyy}}xx  |     안녕/homexx\n'
    'A|안녕${XXX:-${YYY:-yyy}}xx  |     안녕yyyxx\n'
    'A|안녕${XXX:YYY}             |     error\n'
    'A|안녕${XXX:+${PWD}}xx       |     안녕xx\n'
    'A|안녕${PWD:+${XXX}}xx       |     안녕xx\n'
    'A|안녕${PWD:+${SHELL}}xx     |     안녕bashxx\n'
    'A|안녕${XXX:+000}xx          |     안녕xx\n'
    'A|안녕${PWD:+000}xx          |     안녕000xx\n'
    "A|'안녕${XX}'                |     안녕${XX}\n"
    'A|"안녕${PWD}"               |     안녕/home\n'
    'A|"안녕\'$PWD\'"               |     안녕\'/home\'\n'
    'A|\'"안녕"\'                   |     "안녕"\n'
    'A|안녕\\$PWD                  |     안녕$PWD\n'
    'A|"안녕\\$PWD"                |     안녕$PWD\n'
    "A|'안녕\\$PWD'                |     안녕\\$PWD\n"
    'A|안녕${PWD                  |     error\n'
    'A|안녕${PWD:=000}xx          |     error\n'
    'A|안녕${PWD:+${PWD}:}xx      |     안녕/home:xx\n'
    'A|안녕${XXX:-\\$PWD:}xx       |     안녕$PWD:xx\n'
    'A|안녕${XXX:-\\${PWD}z}xx     |     안녕${PWDz}xx\n'
    'A|$KOREAN                    |     한국어\n'
    'A|안녕$KOREAN                |     안녕한국어\n'
    'A|${{aaa}                   |     error\n'
    'A|${aaa}}                   |     }\n'
    'A|${aaa                     |     error\n'
    'A|${{aaa:-bbb}              |     error\n'
    'A|${aaa:-bbb}}              |     bbb}\n'
    'A|${aaa:-bbb                |     error\n'
    'A|${aaa:-bbb}               |     bbb\n'
    'A|${aaa:-${bbb:-ccc}}       |     ccc\n'
    'A|${aaa:-bbb ${foo}         |     error\n'
    'A|${aaa:-bbb {foo}          |     bbb {foo\n'
    'A|${:}                      |     error\n'
    'A|${:-bbb}                  |     error\n'
    'A|${:+bbb}                  |     error\n'
    '\n'
    "# Positional parameters won't be set:\n"
    '# http://pubs.opengroup.org/onlinepubs/009695399/utilities/xcu_chap02.html#tag_02_05_01\n'
    'A|$1                        |\n'
    'A|${1}                      |\n'
    'A|${1:+bbb}                 |\n'
    'A|${1:-bbb}                 |     bbb\n'
    'A|$2                        |\n'
    'A|${2}                      |\n'
    'A|${2:+bbb}                 |\n'
    'A|${2:-bbb}                 |     bbb\n'
    'A|$3                        |\n'
    'A|${3}                      |\n'
    'A|${3:+bbb}                 |\n'
    'A|${3:-bbb}                 |     bbb\n'
    'A|$4                        |\n'
    'A|${4}                      |\n'
    'A|${4:+bbb}                 |\n'
    'A|${4:-bbb}                 |     bbb\n'
    'A|$5                        |\n'
    'A|${5}                      |\n'
    'A|${5:+bbb}                 |\n'
    'A|${5:-bbb}                 |     bbb\n'
    'A|$6                        |\n'
    'A|${6}                      |\n'
    'A|${6:+bbb}                 |\n'
    'A|${6:-bbb}                 |     bbb\n'
    'A|$7                        |\n'
    'A|${7}                      |\n'
    'A|${7:+bbb}                 |\n'
    'A|${7:-bbb}                 |     bbb\n'
    'A|$8                        |\n'
    'A|${8}                      |\n'
    'A|${8:+bbb}                 |\n'
    'A|${8:-bbb}                 |     bbb\n'
    'A|$9                        |\n'
    'A|${9}                      |\n'
    'A|${9:+bbb}                 |\n'
    'A|${9:-bbb}                 |     bbb\n'
    'A|$999                      |\n'
    'A|${999}                    |\n'
    'A|${999:+bbb}               |\n'
    'A|${999:-bbb}               |     bbb\n'
    'A|$999aaa                   |     aaa\n'
    'A|${999}aaa                 |     aaa\n'
    'A|${999:+bbb}aaa            |     aaa\n'
    'A|${999:-bbb}aaa            |     bbbaaa\n'
    'A|$001                      |\n'
    'A|${001}                    |\n'
    'A|${001:+bbb}               |\n'
    'A|${001:-bbb}               |     bbb\n'
    'A|$001aaa                   |     aaa\n'
    'A|${001}aaa                 |     aaa\n'
    'A|${001:+bbb}aaa            |     aaa\n'
    'A|${001:-bbb}aaa            |     bbbaaa\n'
    '\n'
    "# Special parameters won't be set in the Dockerfile:\n"
    '# http://pubs.opengroup.org/onlinepubs/009695399/utilities/xcu_chap02.html#tag_02_05_02\n'
    'A|$@                        |\n'
    'A|${@}                      |\n'
    'A|${@:+bbb}                 |\n'
    'A|${@:-bbb}                 |     bbb\n'
    'A|$@@@                      |     @@\n'
    'A|$@aaa                     |     aaa\n'
    'A|${@}aaa                   |     aaa\n'
    'A|${@:+bbb}aaa              |     aaa\n'
    'A|${@:-bbb}aaa              |     bbbaaa\n'
    'A|$*                        |\n'
    'A|${*}                      |\n'
    'A|${*:+bbb}                 |\n'
    'A|${*:-bbb}                 |     bbb\n'
    'A|$#                        |\n'
    'A|${#}                      |\n'
    'A|${#:+bbb}                 |\n'
    'A|${#:-bbb}                 |     bbb\n'
    'A|$?                        |\n'
    'A|${?}                      |\n'
    'A|${?:+bbb}                 |\n'
    'A|${?:-bbb}                 |     bbb\n'
    'A|$-                        |\n'
    'A|${-}                      |\n'
    'A|${-:+bbb}                 |\n'
    'A|${-:-bbb}                 |     bbb\n'
    'A|$$                        |\n'
    'A|${$}                      |\n'
    'A|${$:+bbb}                 |\n'
    'A|${$:-bbb}                 |     bbb\n'
    'A|$!                        |\n'
    'A|${!}                      |\n'
    'A|${!:+bbb}                 |\n'
    'A|${!:-bbb}                 |     bbb\n'
    'A|$0                        |\n'
    'A|${0}                      |\n'
    'A|${0:+bbb}                 |\n'
    'A|${0:-bbb}                 |     bbb\n'
)


WORDS_TEST = (
    'hello | hello\n'
    'hello${hi}bye | hellobye\n'
    'ENV hi=hi\n'
    'hello${hi}bye | hellohibye\n'
    'ENV space=abc  def\n'
    'hello${space}bye | helloabc,defbye\n'
    'hello"${space}"bye | helloabc  defbye\n'
    'hello "${space}"bye | hello,abc  defbye\n'
    'ENV leading=  ab c\n'
    'hello${leading}def | hello,ab,cdef\n'
    'hello"${leading}" def | hello  ab c,def\n'
    'hello"${leading}" | hello  ab c\n'
    'hello${leading} | hello,ab,c\n'
    "# next line MUST have 3 trailing spaces, don't erase them!\n"
    'ENV trailing=ab c   \n'
    'hello${trailing} | helloab,c\n'
    'hello${trailing}d | helloab,c,d\n'
    'hello"${trailing}"d | helloab c   d\n'
    "# next line MUST have 3 trailing spaces, don't erase them!\n"
    'hel"lo${trailing}" | helloab c   \n'
    'hello" there  " | hello there  \n'
    'hello there     | hello,there\n'
    'hello\\ there | hello there\n'
    'hello" there | error\n'
    'hello\\" there | hello",there\n'
    'hello"\\\\there" | hello\\there\n'
    'hello"\\there" | hello\\there\n'
    "hello'\\\\there' | hello\\\\there\n"
    "hello'\\there' | hello\\there\n"
    "hello'$there' | hello$there\n"
)


def _env_var_cases() -> list[tuple[str, str]]:
    cases = []
    for line in ENV_VAR_TEST.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        platform, source, expected = (w.strip() for w in line.strip().split("|"))
        if platform in ("A", "U"):  # W: Windows only
            cases.append((source, expected))
    return cases


@pytest.mark.parametrize(("source", "expected"), _env_var_cases())
def test_env_var_test(source: str, expected: str) -> None:
    env = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}
    lex = ShellLex("\\")
    if expected == "error":
        with pytest.raises(ShellError):
            lex.process_word(source, env)
    else:
        assert lex.process_word(source, env) == expected


def _words_cases() -> list[tuple[str, dict[str, str], list[str]]]:
    cases = []
    env: dict[str, str] = {}
    for line in WORDS_TEST.splitlines():
        if line.startswith("#"):
            continue
        if line.startswith("ENV "):
            key, _, value = line[3:].lstrip(" ").partition("=")
            env = {**env, key: value}
            continue
        source, expected = line.split("|")
        cases.append((source.strip(), env, expected.lstrip(" ").split(",")))
    return cases


@pytest.mark.parametrize(("source", "env", "expected"), _words_cases())
def test_words_test(source: str, env: dict[str, str], expected: list[str]) -> None:
    lex = ShellLex("\\")
    if expected == ["error"]:
        with pytest.raises(ShellError):
            lex.process_words(source, env)
    else:
        assert lex.process_words(source, env) == expected


def test_mandatory_env_vars() -> None:
    # lex_test.go TestShellParserMandatoryEnvVars
    lex = ShellLex("\\")
    set_, empty, unset = {"VAR": "plain", "ARG": "x"}, {"VAR": "", "ARG": "x"}, {"ARG": "x"}
    no_empty, no_unset = "${VAR:?message here$ARG}", "${VAR?message here$ARG}"
    assert lex.process_word(no_empty, set_) == "plain"
    for env in (empty, unset):
        with pytest.raises(ShellError, match="message herex"):
            lex.process_word(no_empty, env)
    assert lex.process_word(no_unset, set_) == "plain"
    assert lex.process_word(no_unset, empty) == ""
    with pytest.raises(ShellError, match="message herex"):
        lex.process_word(no_unset, unset)


# lex_test.go TestProcessWithMatches: (input, env, expected or None for an error, matched,
# unmatched)
WITH_MATCHES: list[tuple[str, dict[str, str], str | None, set[str], set[str]]] = [
    ("x", {"DUMMY": "dummy"}, "x", set(), set()),
    ("x ${UNUSED}", {"DUMMY": "dummy"}, "x ", set(), {"UNUSED"}),
    ("x ${FOO}", {"FOO": "y"}, "x y", {"FOO"}, set()),
    ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx  ccc",
     {"FOO", "BAR"}, {"BAZ"}),
    ("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx bbb ccc",
     {"FOO", "BAR"}, {"BAZ"}),
    ("${FOO:-}", {"FOO": "xxx", "BAR": ""}, "xxx", {"FOO"}, set()),
    ("${FOO:-}", {}, "", set(), {"FOO"}),
    ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa bbb ",
     {"FOO", "BAR"}, {"BAZ"}),
    ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa  ",
     {"FOO", "BAR"}, {"BAZ"}),
    ("${FOO?aaa}", {"FOO": "xxx", "BAR": ""}, "xxx", {"FOO"}, set()),
    ("${BAR?bbb}", {"FOO": "xxx", "BAR": ""}, "", {"BAR"}, set()),
    ("${BAZ?ccc}", {"FOO": "xxx", "BAR": ""}, None, set(), {"BAZ"}),
    ("${FOO:?aaa}", {"FOO": "xxx", "BAR": ""}, "xxx", {"FOO"}, set()),
    ("${BAR:?bbb}", {"FOO": "xxx", "BAR": ""}, None, set(), set()),
    ("${BAZ:?ccc}", {"FOO": "xxx", "BAR": ""}, None, set(), {"BAZ"}),
    ("${BAZ:?}", {"FOO": "xxx", "BAR": ""}, None, set(), {"BAZ"}),
    ("${FOO=aaa}", {"FOO": "xxx", "BAR": ""}, None, set(), set()),
    ("${FOO=:aaa}", {"FOO": "xxx", "BAR": ""}, None, set(), set()),
    ("${FOO=}", {}, None, set(), set()),
    ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", {"FOO": "()[]{}^$.*?|\\x"}, "x", {"FOO"}, set()),
    ("${FOO%%\\**}", {"FOO": "xx**"}, "xx", {"FOO"}, set()),
    ("${FOO#*x*y}", {"FOO": "xxyy"}, "y", {"FOO"}, set()),
    ("${FOO#*}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
    ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": "x"}, "xyy", {"FOO", "BAR"}, set()),
    ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy", {"FOO", "BAR"}, set()),
    ("${FOO#}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
    ("${FOO##*x}", {"FOO": "xxyy"}, "yy", {"FOO"}, set()),
    ("${FOO##}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
    ("${FOO#?\\?}", {"FOO": "???y"}, "?y", {"FOO"}, set()),
    ("${ABC:-.}${FOO%x}${ABC:-.}", {"FOO": "xxyy"}, ".xxyy.", {"FOO"}, {"ABC"}),
    ("${FOO%%\\**\\*}", {"FOO": "a***yy*"}, "a", {"FOO"}, set()),
    ("${FOO%}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
    ("${FOO%%$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy", {"FOO", "BAR"}, set()),
    ("${FOO:#}", {}, None, set(), set()),
    ("${FOO:##}", {}, None, set(), set()),
    ("${FOO:%}", {}, None, set(), set()),
    ("${FOO:%%}", {}, None, set(), set()),
    ("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", {"FOO": "/foo*/*/*.txt", "NEEDLE": "\\*/"},
     "/foo.*/*.txt - /foo..*.txt", {"FOO", "NEEDLE"}, set()),
    ("${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", {"FOO": "/tmp/tmp/bar.txt", "NEEDLE": "/tmp"},
     "/tmp/bar.txt - /bar.txt", {"FOO", "NEEDLE"}, set()),
    ("${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
     {"FOO": "/a/foo/b/c.txt", "NEEDLE": "/?/", "REPLACEMENT": "/"},
     "/foo/b/c.txt - /foo/c.txt", {"FOO", "NEEDLE", "REPLACEMENT"}, set()),
    ("${FOO/$NEEDLE/$REPLACEMENT}",
     {"FOO": "http://google.de", "NEEDLE": "http://", "REPLACEMENT": "https://"},
     "https://google.de", {"FOO", "NEEDLE", "REPLACEMENT"}, set()),
    ("${FOO//\\//\\/}", {"FOO": "/tmp/foo.txt"}, "\\/tmp\\/foo.txt", {"FOO"}, set()),
    ("${FOO/$BAR/ww}", {"FOO": "xxyy", "BAR": ""}, "wwxxyy", {"FOO", "BAR"}, set()),
    ("${FOO//ww}", {"FOO": "xxyy"}, None, set(), set()),
    ("${FOO//}", {"FOO": "xxyy"}, None, set(), set()),
    ("${FOO///}", {"FOO": "xxyy"}, "xxyy", {"FOO"}, set()),
    ("${FOO///}", {}, "", set(), {"FOO"}),
]


@pytest.mark.parametrize(("word", "env", "expected", "matched", "unmatched"), WITH_MATCHES)
def test_process_with_matches(word: str, env: dict[str, str], expected: str | None,
                              matched: set[str], unmatched: set[str]) -> None:
    lex = ShellLex("\\")
    if expected is None:
        with pytest.raises(ShellError):
            lex.process_word_with_matches(word, env)
        return
    assert lex.process_word_with_matches(word, env) == (expected, matched, unmatched)


@pytest.mark.parametrize(("env", "expected"), [
    # lex_test.go TestProcessWithMatchesPlatform
    ({"VERSION": "v1.2.3", "TARGETOS": "linux", "TARGETARCH": "arm", "TARGETVARIANT": "v7"},
     "something-v1.2.3.linux-arm-v7.tar.gz"),
    ({"VERSION": "v1.2.3", "TARGETOS": "linux", "TARGETARCH": "arm64", "TARGETVARIANT": ""},
     "something-v1.2.3.linux-arm64.tar.gz"),
    ({"VERSION": "v1.2.3", "TARGETOS": "linux", "TARGETARCH": "arm64"},
     "something-v1.2.3.linux-arm64.tar.gz"),
])
def test_platform_release_name(env: dict[str, str], expected: str) -> None:
    word = "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz"
    assert ShellLex().process_word(word, env) == expected


@pytest.mark.parametrize("pattern", ["\\", "\\x", "\\\\\\"])
def test_invalid_trim_patterns(pattern: str) -> None:
    # TestConvertShellPatternToRegex's invalid patterns, used in ${X#$P}
    with pytest.raises(ShellError, match="invalid pattern"):
        ShellLex().process_word("${X#$P}", {"X": "abc", "P": pattern})


def test_backtick_escape() -> None:
    # With `# escape=`` the backtick escapes and the backslash is an ordinary character
    # (lex.go uses the escape token given to NewLex).
    lex = ShellLex("`")
    assert lex.process_word("c:\\dir `$HOME", {"HOME": "/root"}) == "c:\\dir $HOME"
    assert lex.process_word('"a`"b"', {}) == 'a"b'
    assert lex.process_words("a` b c", {}) == ["a b", "c"]


def test_error_message_and_class() -> None:
    with pytest.raises(ShellError) as info:
        ShellLex().process_word("he${}", {})
    assert str(info.value) == 'failed to process "he${}": syntax error: bad substitution'
    assert isinstance(info.value, InvalidArgument)
    with pytest.raises(ShellError, match="X: is not allowed to be unset"):
        ShellLex().process_word("${X?}", {})


@pytest.mark.parametrize(("text", "names"), [
    ("$A ${B} ${C:-$D} ${E#${F}} '$G' \"$H\" \\$I $1 ${J/x/$K}", {"A", "B", "C", "D", "E", "F",
                                                                   "H", "1", "J", "K"}),
    ("no vars $ here", set()),
    ("${X?must be set}", {"X"}),
    # RUN lines may hold shell syntax lex.go rejects: fall back to $NAME references
    ("echo ${#PATH} $(id -u) $HOME", {"PATH", "HOME"}),
])
def test_used_vars(text: str, names: set[str]) -> None:
    assert ShellLex().used_vars(text) == names


def test_skip_unset_and_raw_options() -> None:
    # lex.go switches the Dockerfile parser uses to find heredoc names
    lex = ShellLex(raw_quotes=True, raw_escapes=True, skip_unset_env=True)
    assert lex.process_words("cat <<'EOF' $X ${Y:-z} a\\ b", {}) == [
        "cat", "<<'EOF'", "$X", "${Y:-z}", "a\\ b"]
    assert ShellLex(skip_process_quotes=True).process_word("'$A' \"b\"", {"A": "1"}) == \
        "'1' \"b\""
    # "<<" keeps the whitespace after it, so "<< EOF" stays one word
    assert ShellLex().process_words("cat << EOF", {}) == ["cat", "<< EOF"]


def test_nested_default_keeps_prefix() -> None:
    # Deliberate: buildkit since 2024 shares one word buffer across nested ${...} and loses
    # "a" here; its older lexer (and bash) give one word "abc".
    assert ShellLex().process_words("a${X:-b}c d", {}) == ["abc", "d"]
