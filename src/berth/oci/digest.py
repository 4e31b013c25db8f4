"""Content digests as the OCI image spec defines them: `algorithm ":" encoded`.

Owns the `Digest` value type (parse and validate once, at the edge), `sha256_of`, a streaming
`Hasher`, and `chain_ids` (OCI image-spec config.md, "Layer ChainID"). Only sha256 is accepted:
it is the one algorithm every registry and docker speak, and the only one berth stores.

Raises: InvalidDigest (an ImageFormatError) for a malformed digest string.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from berth.errors import ImageFormatError

__all__ = ["Digest", "Hasher", "InvalidDigest", "chain_ids", "sha256_of"]

_HEX = frozenset("0123456789abcdef")


class InvalidDigest(ImageFormatError):
    """A string that is not `sha256:<64 lowercase hex>`."""

    def __init__(self, text: str, problem: str) -> None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(f"invalid digest {shown!r}: {problem}")
        self.text = text
        self.problem = problem


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    """A validated `sha256:<hex>` digest. Construct with `Digest.parse` or `Digest.sha256`."""

    algorithm: str
    encoded: str

    def __post_init__(self) -> None:
        text = f"{self.algorithm}:{self.encoded}"
        if self.algorithm != "sha256":
            raise InvalidDigest(text, f"unsupported algorithm {self.algorithm!r} (only sha256)")
        if len(self.encoded) != 64:
            raise InvalidDigest(text, f"sha256 needs 64 hex digits, got {len(self.encoded)}")
        if not _HEX.issuperset(self.encoded):
            raise InvalidDigest(text, "the encoded part must be lowercase hex [0-9a-f]")

    @classmethod
    def parse(cls, text: str | Digest) -> Digest:
        if isinstance(text, Digest):
            return text
        if not isinstance(text, str):
            raise InvalidDigest(repr(text), "not a string")
        algorithm, sep, encoded = text.partition(":")
        if not sep:
            raise InvalidDigest(text, "missing 'algorithm:' prefix (expected sha256:<hex>)")
        return cls(algorithm, encoded)

    @classmethod
    def sha256(cls, encoded: str) -> Digest:
        return cls("sha256", encoded)

    @property
    def hex(self) -> str:
        return self.encoded

    @property
    def short(self) -> str:
        """The first 12 hex digits, as docker shows ids."""
        return self.encoded[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"


class Hasher:
    """Streaming sha256 that also counts bytes: `update` as data passes, then `digest()`."""

    __slots__ = ("_h", "size")

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)
        self.size += len(data)

    def digest(self) -> Digest:
        return Digest("sha256", self._h.hexdigest())


def sha256_of(data: bytes | bytearray | memoryview) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def chain_ids(diff_ids: Iterable[Digest | str]) -> list[Digest]:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[Digest] = []
    for d in diff_ids:
        diff_id = Digest.parse(d)
        if not out:
            out.append(diff_id)
        else:
            out.append(sha256_of(f"{out[-1]} {diff_id}".encode("ascii")))
    return out
