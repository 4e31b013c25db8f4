"""Image references (`[domain/]path[:tag][@digest]`), parsed and normalised as docker does.

The grammar is that of docker's distribution/reference package:

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] component ( "/" component )*
    domain     := host [ ":" port ]          host: DNS labels, IPv4, or [IPv6]
    component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [\\w][\\w.-]{0,127}
    digest     := algorithm ":" hex          (sha256: 64 lowercase hex, sha512: 128)

Normalising (docker's ParseNormalizedNamed): the first component is a domain only if it contains
'.' or ':', is `localhost`, or has an upper-case letter; otherwise the domain is `docker.io`, and a
single-component path on docker.io gets `library/`. `index.docker.io` becomes `docker.io`. A
reference with neither tag nor digest gets the tag `latest` (docker's TagNameOnly).

`Reference.familiar()` is the short form docker prints (`busybox:latest`, `user/app:1`),
`str(ref)` the full one (`docker.io/library/busybox:latest`).

Raises: InvalidArgument, its message naming the input.
"""

from __future__ import annotations

import re
from collections import namedtuple

from berth.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_PATH = rf"{_COMPONENT}(?:/{_COMPONENT})*"

_REFERENCE_RE = re.compile(
    rf"(?P<name>(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH}))"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?")
_NAME_RE = re.compile(rf"(?:{_DOMAIN}/)?{_PATH}")
_TAG_RE = re.compile(_TAG)
_DOMAIN_RE = re.compile(_DOMAIN)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


class Reference(namedtuple("Reference", "domain path tag digest", defaults=("", ""))):
    """A normalised reference. `tag` and `digest` are "" when absent."""

    __slots__ = ()
    domain: str
    path: str
    tag: str
    digest: str

    @property
    def repository(self) -> str:
        """The full repository name: `docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}"

    name = repository

    @property
    def familiar_repository(self) -> str:
        """The repository as docker prints it: `busybox`, `user/app`, `quay.io/x/y`."""
        if self.domain == DEFAULT_DOMAIN:
            rest = self.path
            if rest.startswith(OFFICIAL_REPO_PREFIX) and "/" not in rest[len(OFFICIAL_REPO_PREFIX):]:
                rest = rest[len(OFFICIAL_REPO_PREFIX):]
            return rest
        return self.repository

    def familiar(self) -> str:
        """docker's FamiliarString: `busybox:latest`, `user/app@sha256:...`."""
        return self.familiar_repository + self._suffix()

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def with_tag(self, tag: str) -> Reference:
        return self._replace(tag=validate_tag(tag), digest="")

    def with_digest(self, digest: str) -> Reference:
        return self._replace(tag="", digest=_check_digest(digest, digest))

    def __str__(self) -> str:
        return self.repository + self._suffix()


def validate_tag(tag: str) -> str:
    if not _TAG_RE.fullmatch(tag):
        raise InvalidArgument(f"invalid tag format: {tag!r}")
    return tag


def _check_digest(digest: str, text: str) -> str:
    algo, _, hexpart = digest.partition(":")
    want = _DIGEST_LENGTHS.get(algo)
    if want is None:
        raise InvalidArgument(f"invalid reference format: {text!r}: unsupported digest algorithm")
    if len(hexpart) != want or not re.fullmatch(r"[a-f0-9]+", hexpart):
        raise InvalidArgument(f"invalid reference format: {text!r}: invalid checksum digest format")
    return digest


def _split_domain(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if (not slash or ("." not in first and ":" not in first and first != "localhost"
                      and first.lower() == first)):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse(text: str, *, default_tag: bool = True) -> Reference:
    """Parse a reference as the docker CLI does (`docker pull/tag/run NAME`).

    With `default_tag`, a reference without tag or digest gets `latest`.
    """
    if not isinstance(text, str) or not text:
        raise InvalidArgument(f"invalid reference format: {text!r}: repository name must have at "
                              "least one component")
    if _IDENTIFIER_RE.fullmatch(text):
        raise InvalidArgument(f"invalid repository name ({text}), cannot specify 64-byte "
                              "hexadecimal strings")
    # split off digest and tag before looking at the domain (a port also has a ':')
    name, at, digest = text.partition("@")
    tag, has_tag = "", False
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag, has_tag = name[:colon], name[colon + 1:], True
    domain, remainder = _split_domain(name)
    if remainder.lower() != remainder:
        raise InvalidArgument(f"invalid reference format: repository name ({remainder}) must be "
                              "lowercase")
    full = f"{domain}/{remainder}" + (f":{tag}" if tag else "") + (f"@{digest}" if at else "")
    m = _REFERENCE_RE.fullmatch(full)
    if m is None or (at and not digest) or (has_tag and not tag):
        raise InvalidArgument(f"invalid reference format: {text!r}")
    if len(m.group("name")) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(f"invalid reference format: {text!r}: repository name must not be "
                              f"more than {NAME_TOTAL_LENGTH_MAX} characters")
    if digest:
        _check_digest(digest, text)
    if default_tag and not tag and not digest:
        tag = DEFAULT_TAG
    return Reference(domain, remainder, tag, digest)


def parse_repository(text: str) -> Reference:
    """A repository name alone (no tag, no digest), normalised: for `--filter reference=`."""
    ref = parse(text, default_tag=False)
    if ref.tag or ref.digest:
        raise InvalidArgument(f"invalid repository name: {text!r}: must not have a tag or digest")
    return ref


def is_image_id(text: str) -> bool:
    """True for a full image id, bare (64 hex) or as `sha256:<64 hex>`."""
    return bool(_IDENTIFIER_RE.fullmatch(text.removeprefix("sha256:")))
