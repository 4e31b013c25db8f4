"""The wire between the `berth` script and `berth system service` (cli/client.py)."""

from __future__ import annotations

import pytest

from berth.cli import client


def test_request_round_trip() -> None:
    argv = ["run", "--rm", "-e", "A=b=c", "", "ünï"]
    env = {"PATH": "/bin", "EMPTY": "", "X": "a=b"}
    frame = client.encode_request(argv, env, "/tmp/x y", 0o027)
    n = client.request_length(frame)
    assert n == len(frame) - 4
    assert client.decode_request(frame[4:]) == (argv, env, "/tmp/x y", 0o027)
    assert client.request_length(frame[:3]) is None


def test_bad_requests() -> None:
    with pytest.raises(ValueError):
        client.encode_request(["a\0b"], {}, "/", 0)
    for payload in (b"", b"nope\0", b"berth1\0/\x0022\0", b"berth1\0/\0" + b"22\x005\0a\0",
                    b"berth1\0/\x0022\x000\0NOEQUALS\0"):
        with pytest.raises(ValueError):
            client.decode_request(payload)


def test_answers_and_socket_path() -> None:
    assert client.read_answer(client.answer(b"P", 1234)) == (b"P", 1234)
    assert client.read_answer(client.answer(b"X", 130)) == (b"X", 130)
    assert client.socket_path({"BERTH_RUN": "/r"}) == "/r/berth.sock"
    assert client.socket_path({}) == "/run/berth/berth.sock"
