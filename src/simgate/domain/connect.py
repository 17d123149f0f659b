"""What a phone scans to join: the server's URL and its gateway key in one URI, shown as a
QR code on the dashboard and taken by ``simgate gateway emulate --qr``.

``simgate://connect?server=<URL-encoded http(s) URL>&key=<gw_live_… key>``
"""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

SCHEME = "simgate"


class BadConnectUri(ValueError):
    """The text is not a simgate connect URI; the message says what is wrong."""


def connect_uri(server: str, key: str) -> str:
    return (
        f"{SCHEME}://connect?server={quote(server.rstrip('/'), safe='')}&key={quote(key, safe='')}"
    )


def parse_connect_uri(text: str) -> tuple[str, str]:
    """``(server URL, key)`` from a connect URI."""
    parts = urlsplit(text.strip())
    if parts.scheme != SCHEME or parts.netloc != "connect":
        raise BadConnectUri(f"expected a URI starting {SCHEME}://connect?, got {text[:40]!r}")
    query = parse_qs(parts.query)
    server = (query.get("server") or [""])[0]
    key = (query.get("key") or [""])[0]
    if urlsplit(server).scheme not in ("http", "https") or not urlsplit(server).netloc:
        raise BadConnectUri("its server is not an http:// or https:// URL")
    if not key:
        raise BadConnectUri("it has no key")
    return server, key
