"""Image references normalised as docker's distribution/reference does (ParseNormalizedNamed +
TagNameOnly), and its errors."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.oci import reference

D64 = "sha256:" + "a" * 64
H64 = "0123456789abcdef" * 4

# input -> (str(ref), familiar(), domain, path, tag, digest)
VALID = [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest",
     "docker.io", "library/busybox", "latest", ""),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36",
     "docker.io", "library/busybox", "1.36", ""),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest",
     "docker.io", "library/busybox", "latest", ""),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest",
     "docker.io", "library/busybox", "latest", ""),
    ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest", "busybox:latest",
     "docker.io", "library/busybox", "latest", ""),
    ("index.docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest",
     "docker.io", "library/busybox", "latest", ""),
    ("index.docker.io/user/app:v1", "docker.io/user/app:v1", "user/app:v1",
     "docker.io", "user/app", "v1", ""),
    ("user/app", "docker.io/user/app:latest", "user/app:latest",
     "docker.io", "user/app", "latest", ""),
    ("user/app/sub", "docker.io/user/app/sub:latest", "user/app/sub:latest",
     "docker.io", "user/app/sub", "latest", ""),
    ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest",
     "docker.io", "library/a/b", "latest", ""),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest",
     "localhost", "app", "latest", ""),
    ("localhost:5000/a/b:tag", "localhost:5000/a/b:tag", "localhost:5000/a/b:tag",
     "localhost:5000", "a/b", "tag", ""),
    ("localhost:5000", "docker.io/library/localhost:5000", "localhost:5000",
     "docker.io", "library/localhost", "5000", ""),
    ("registry.example.com/x", "registry.example.com/x:latest", "registry.example.com/x:latest",
     "registry.example.com", "x", "latest", ""),
    (f"registry.example.com/x@{D64}", f"registry.example.com/x@{D64}",
     f"registry.example.com/x@{D64}", "registry.example.com", "x", "", D64),
    (f"name:tag@{D64}", f"docker.io/library/name:tag@{D64}", f"name:tag@{D64}",
     "docker.io", "library/name", "tag", D64),
    (f"busybox@{D64}", f"docker.io/library/busybox@{D64}", f"busybox@{D64}",
     "docker.io", "library/busybox", "", D64),
    ("quay.io:443/org/img:1.0-rc.1", "quay.io:443/org/img:1.0-rc.1",
     "quay.io:443/org/img:1.0-rc.1", "quay.io:443", "org/img", "1.0-rc.1", ""),
    ("10.0.0.1:5000/img", "10.0.0.1:5000/img:latest", "10.0.0.1:5000/img:latest",
     "10.0.0.1:5000", "img", "latest", ""),
    ("[::1]:5000/img:x", "[::1]:5000/img:x", "[::1]:5000/img:x", "[::1]:5000", "img", "x", ""),
    ("Example.COM/img", "Example.COM/img:latest", "Example.COM/img:latest",
     "Example.COM", "img", "latest", ""),
    # an upper-case first component is taken as a domain (distribution/reference ≥ 0.5)
    ("Foo/bar", "Foo/bar:latest", "Foo/bar:latest", "Foo", "bar", "latest", ""),
    ("a_b__c-d---e/f.g", "docker.io/a_b__c-d---e/f.g:latest", "a_b__c-d---e/f.g:latest",
     "docker.io", "a_b__c-d---e/f.g", "latest", ""),
    ("my.registry/ns/app:TAG_1.x-y", "my.registry/ns/app:TAG_1.x-y", "my.registry/ns/app:TAG_1.x-y",
     "my.registry", "ns/app", "TAG_1.x-y", ""),
    ("fixture/layers:1", "docker.io/fixture/layers:1", "fixture/layers:1",
     "docker.io", "fixture/layers", "1", ""),
    ("busybox:_x", "docker.io/library/busybox:_x", "busybox:_x",
     "docker.io", "library/busybox", "_x", ""),
    ("busybox:" + "t" * 128, "docker.io/library/busybox:" + "t" * 128, "busybox:" + "t" * 128,
     "docker.io", "library/busybox", "t" * 128, ""),
]

INVALID = [
    ("", "at least one component"),
    ("Busybox", "must be lowercase"),
    ("user/App", "must be lowercase"),
    ("docker.io/User/app", "must be lowercase"),
    (H64, "64-byte hexadecimal"),
    ("busybox:", "invalid reference format"),
    ("busybox@", "invalid reference format"),
    ("busybox:-x", "invalid reference format"),
    ("busybox:.x", "invalid reference format"),
    ("busybox:" + "t" * 129, "invalid reference format"),
    ("busybox:a/b", "invalid reference format"),
    ("bu sybox", "invalid reference format"),
    ("-busybox", "invalid reference format"),
    ("busybox-", "invalid reference format"),
    ("a..b", "invalid reference format"),
    ("a/b/", "invalid reference format"),
    ("/a", "invalid reference format"),
    ("a//b", "invalid reference format"),
    ("busybox@sha256:abc", "invalid reference format"),
    ("busybox@sha256:" + "A" * 64, "invalid checksum digest format"),
    ("busybox@sha256:" + "a" * 63, "invalid reference format"),
    ("busybox@md5:" + "a" * 32, "unsupported digest algorithm"),
    ("localhost:port/a", "invalid reference format"),
    ("a/" + "b" * 260, "255 characters"),
]


@pytest.mark.parametrize("text, full, familiar, domain, path, tag, digest", VALID,
                         ids=[v[0][:40] for v in VALID])
def test_valid(text: str, full: str, familiar: str, domain: str, path: str, tag: str,
               digest: str) -> None:
    ref = reference.parse(text)
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert ref.repository == f"{domain}/{path}"
    # normalising is idempotent, and the familiar form parses back to the same reference
    assert reference.parse(str(ref)) == ref
    assert reference.parse(ref.familiar()) == ref


@pytest.mark.parametrize("text, message", INVALID, ids=[v[0][:40] or "empty" for v in INVALID])
def test_invalid(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        reference.parse(text)
    assert message in str(exc.value)
    if text and "lowercase" not in message:  # docker names the lower-cased remainder instead
        assert text[:30] in str(exc.value)


def test_table_is_big_enough() -> None:
    assert len(VALID) + len(INVALID) >= 30


def test_familiar_repository_is_what_docker_images_prints() -> None:
    assert reference.parse("busybox").familiar_repository == "busybox"
    assert reference.parse("docker.io/user/app:1").familiar_repository == "user/app"
    assert reference.parse("localhost/x:1").familiar_repository == "localhost/x"
    assert reference.parse("docker.io/library/a/b").familiar_repository == "library/a/b"


def test_no_default_tag() -> None:
    ref = reference.parse("busybox", default_tag=False)
    assert ref.tag == "" and str(ref) == "docker.io/library/busybox"


def test_with_tag_and_digest() -> None:
    ref = reference.parse(f"a:b@{D64}")
    assert str(ref.with_tag("c")) == "docker.io/library/a:c"
    assert str(ref.with_digest(D64)) == f"docker.io/library/a@{D64}"
    with pytest.raises(InvalidArgument):
        ref.with_tag("-bad")


def test_parse_repository() -> None:
    assert str(reference.parse_repository("busybox")) == "docker.io/library/busybox"
    with pytest.raises(InvalidArgument, match="tag or digest"):
        reference.parse_repository("busybox:1")


def test_is_image_id() -> None:
    assert reference.is_image_id(H64)
    assert reference.is_image_id("sha256:" + H64)
    assert not reference.is_image_id("busybox")
    assert not reference.is_image_id(H64[:12])
