"""berth.oci.digest: parsing, hashing, chain ids (vectors computed here from the spec's rule)."""

from __future__ import annotations

import hashlib

import pytest

from berth.errors import ImageFormatError
from berth.oci.digest import Digest, Hasher, InvalidDigest, chain_ids, sha256_of

HEX_A = "a" * 64
HEX_B = "b" * 64
HEX_C = "c" * 64


def test_parse_and_fields() -> None:
    d = Digest.parse(f"sha256:{HEX_A}")
    assert d.algorithm == "sha256"
    assert d.hex == d.encoded == HEX_A
    assert str(d) == f"sha256:{HEX_A}"
    assert d.short == "a" * 12
    assert Digest.parse(d) is d
    assert d == Digest.sha256(HEX_A)
    assert len({d, Digest.parse(f"sha256:{HEX_A}")}) == 1


@pytest.mark.parametrize("text, problem", [
    (HEX_A, "missing 'algorithm:'"),
    (f"sha512:{HEX_A}", "unsupported algorithm"),
    ("sha256:abc", "64 hex digits, got 3"),
    (f"sha256:{'A' * 64}", "lowercase hex"),
    (f"sha256:{'g' * 64}", "lowercase hex"),
    ("", "missing 'algorithm:'"),
    (f"sha256:{HEX_A} ", "64 hex digits"),
])
def test_parse_errors(text: str, problem: str) -> None:
    with pytest.raises(InvalidDigest) as exc:
        Digest.parse(text)
    assert isinstance(exc.value, ImageFormatError)
    assert problem in str(exc.value)
    assert exc.value.text == text


def test_parse_rejects_non_string() -> None:
    with pytest.raises(InvalidDigest):
        Digest.parse(123)  # type: ignore[arg-type]


def test_sha256_of_and_streaming_hasher_agree() -> None:
    data = b"hello world\n" * 1000
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_of(data) == Digest.sha256(expected)
    h = Hasher()
    for i in range(0, len(data), 777):
        h.update(data[i:i + 777])
    assert h.digest() == sha256_of(data)
    assert h.size == len(data)
    # the empty blob's digest, as seen in every registry
    assert str(sha256_of(b"")) == ("sha256:e3b0c44298fc1c149afbf4c8996fb924"
                                   "27ae41e4649b934ca495991b7852b855")


def test_chain_ids_follow_the_spec() -> None:
    l0, l1, l2 = (f"sha256:{h}" for h in (HEX_A, HEX_B, HEX_C))
    c1 = hashlib.sha256(f"{l0} {l1}".encode()).hexdigest()
    c2 = hashlib.sha256(f"sha256:{c1} {l2}".encode()).hexdigest()
    assert chain_ids([l0, l1, l2]) == [Digest.parse(l0), Digest.sha256(c1), Digest.sha256(c2)]
    assert chain_ids([]) == []
    assert chain_ids([l0]) == [Digest.parse(l0)]


def test_chain_id_known_vector() -> None:
    # Computed by hand (sha256sum of the literal string) for two layers:
    # printf 'sha256:aaaa…aaaa sha256:bbbb…bbbb' | sha256sum
    assert chain_ids([f"sha256:{HEX_A}", f"sha256:{HEX_B}"])[1].hex == \
        "ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c"


def test_chain_ids_validate_input() -> None:
    with pytest.raises(InvalidDigest):
        chain_ids([f"sha256:{HEX_A}", "sha256:nope"])
