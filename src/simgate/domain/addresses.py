"""Webhook target URLs and which IP addresses a webhook may be sent to.

A webhook URL is entered by a user, and the server then connects to it: without care that
lets anyone with an account reach the loopback interface, the private network or the cloud
metadata service (server-side request forgery). ``parse_target`` accepts only plain
``http(s)://host[:port]/path`` URLs, and ``blocked_reason`` says why an address is off limits.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LEN = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}

_DIGITS = re.compile(r"[0-9]+")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_HOSTNAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")
# Everything printable in ASCII except the characters a URL may not carry as they are.
_PATH_SAFE = "!$%&'()*+,-./:;=?@[]_~"

_METADATA = frozenset(
    {ipaddress.IPv4Address("169.254.169.254"), ipaddress.IPv6Address("fd00:ec2::254")}
)
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_PRIVATE = (
    ipaddress.IPv4Network("10.0.0.0/8"),
    ipaddress.IPv4Network("172.16.0.0/12"),
    ipaddress.IPv4Network("192.168.0.0/16"),
    ipaddress.IPv4Network("100.64.0.0/10"),  # carrier-grade NAT shared address space
)
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class Target:
    """A parsed webhook URL. ``host`` is lowercase ASCII (IDNA), IPv6 without brackets;
    ``path`` includes the query string."""

    scheme: str
    host: str
    port: int
    path: str

    @property
    def is_ip_literal(self) -> bool:
        return _ip_or_none(self.host) is not None

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the host, with the port when it is not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.path}"

    def url_for(self, ip: str) -> str:
        """This URL with the host replaced by an (already checked) IP address."""
        address = ipaddress.ip_address(ip)
        host = f"[{address}]" if address.version == 6 else str(address)
        if self.port != DEFAULT_PORTS[self.scheme]:
            host = f"{host}:{self.port}"
        return f"{self.scheme}://{host}{self.path}"


def _ip_or_none(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _has_space_or_control(text: str) -> bool:
    return any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in text)


def _parse_port(text: str | None, scheme: str) -> int:
    if not text:  # "http://host:/" means the default port, as browsers read it
        return DEFAULT_PORTS[scheme]
    if not _DIGITS.fullmatch(text) or len(text) > 5:
        raise ValueError(f"webhook URL port {text!r} is not a number from 1 to 65535")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"webhook URL port {port} is not a number from 1 to 65535")
    return port


def _parse_ipv6_host(inner: str) -> str:
    if "%" in inner:
        raise ValueError("webhook URLs must not carry an IPv6 zone id (%...)")
    try:
        return ipaddress.IPv6Address(inner).compressed
    except ValueError as exc:
        raise ValueError(f"webhook URL host [{inner}] is not a valid IPv6 address") from exc


def _parse_name_host(raw: str) -> str:
    host = raw.lower()
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"webhook URL host {raw!r} is not a valid host name") from exc
    if not ascii_host or ascii_host == ".":
        raise ValueError("webhook URL has no host")
    labels = ascii_host.rstrip(".").split(".")
    # Hosts whose last label is a number are IPv4 addresses (as browsers and inet_aton read
    # them); accept only the plain dotted-quad form so there is one way to write each.
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        try:
            return str(ipaddress.IPv4Address(ascii_host.rstrip(".")))
        except ValueError as exc:
            raise ValueError(
                f"webhook URL host {raw!r}: write IPv4 addresses as four decimal numbers, "
                "like 192.0.2.10"
            ) from exc
    if not _HOSTNAME.fullmatch(ascii_host) or len(ascii_host.rstrip(".")) > 253:
        raise ValueError(f"webhook URL host {raw!r} is not a valid host name")
    return ascii_host


def parse_target(url: str) -> Target:
    """Parse and normalise a webhook URL; ValueError says what is wrong with it."""
    if len(url) > MAX_URL_LEN:
        raise ValueError(f"webhook URL is longer than {MAX_URL_LEN} characters")
    if _has_space_or_control(url):
        raise ValueError("webhook URL must not contain spaces or control characters")
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError("webhook URLs must start with http:// or https://")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"webhook URL is not valid: {exc}") from exc
    scheme = parts.scheme.lower()
    netloc = parts.netloc
    if "@" in netloc:
        raise ValueError(
            "webhook URLs must not contain user:password@; check the webhook-signature "
            "header instead, or put a token in the path, not in the URL's user info"
        )
    if netloc.startswith("["):
        end = netloc.find("]")
        if end == -1:
            raise ValueError("webhook URL has an unclosed '[' in its host")
        host = _parse_ipv6_host(netloc[1:end])
        rest = netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError("webhook URL has unexpected text after its IPv6 host")
        port_text: str | None = rest[1:] if rest else None
    else:
        if netloc.count(":") > 1:
            raise ValueError(
                "webhook URL IPv6 hosts must be written in brackets, like [2001:db8::1]"
            )
        raw_host, sep, after = netloc.partition(":")
        if not raw_host:
            raise ValueError("webhook URL has no host")
        host = _parse_name_host(raw_host)
        port_text = after if sep else None
    port = _parse_port(port_text, scheme)
    path = quote(parts.path, safe=_PATH_SAFE) or "/"
    if not path.startswith("/"):
        path = "/" + path
    if parts.query:
        path += "?" + quote(parts.query, safe=_PATH_SAFE)
    return Target(scheme=scheme, host=host, port=port, path=path)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address that traffic to an IPv4-mapped, NAT64 or 6to4 address reaches."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def blocked_reason(address: str | IPAddress) -> str | None:
    """None for a public unicast address, else a short reason why webhooks may not go there.

    Raises ValueError when ``address`` is not an IP address.
    """
    ip: IPAddress = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        ip = ipaddress.IPv6Address(int(ip))  # the zone does not change what the address is
    if ip in _METADATA:
        return "the cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return blocked_reason(embedded)
    if ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK):
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address):
        if any(ip in net for net in _PRIVATE):
            return "a private network"
    elif ip in _UNIQUE_LOCAL or ip.is_site_local:
        return "a private network"
    if ip.is_reserved or not ip.is_global:
        return "reserved"
    return None
