"""Webhook target URLs, which addresses are refused, and the check before each delivery
(with a scripted resolver for DNS rebinding, and the real resolver for localhost)."""

from __future__ import annotations

import ipaddress

import pytest

from simgate.domain.addresses import Target, blocked_reason, parse_target
from simgate.services.ssrf import UnsafeUrl, check_url, resolve

# --- parse_target ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com", Target("http", "example.com", 80, "/")),
        ("HTTPS://Example.COM/Hook", Target("https", "example.com", 443, "/Hook")),
        (
            "https://example.com:8443/a/b?x=1&y=2",
            Target("https", "example.com", 8443, "/a/b?x=1&y=2"),
        ),
        ("http://example.com?x=1", Target("http", "example.com", 80, "/?x=1")),
        ("http://example.com/hook#frag", Target("http", "example.com", 80, "/hook")),
        ("http://example.com:/hook", Target("http", "example.com", 80, "/hook")),
        ("http://example.com:080/", Target("http", "example.com", 80, "/")),
        ("http://example.com./", Target("http", "example.com.", 80, "/")),
        ("http://bücher.de/", Target("http", "xn--bcher-kva.de", 80, "/")),
        (
            "http://\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com/",
            Target("http", "example.com", 80, "/"),
        ),
        ("http://192.0.2.10:8080/x", Target("http", "192.0.2.10", 8080, "/x")),
        ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", Target("http", "127.0.0.1", 80, "/")),
        ("https://[2001:DB8::0:1]/", Target("https", "2001:db8::1", 443, "/")),
        ("http://[::1]:8000/h", Target("http", "::1", 8000, "/h")),
        ("http://example.com/caf%C3%A9", Target("http", "example.com", 80, "/caf%C3%A9")),
        ("http://example.com/café?q=ä", Target("http", "example.com", 80, "/caf%C3%A9?q=%C3%A4")),
        ("http://hooks_1.example.com/", Target("http", "hooks_1.example.com", 80, "/")),
    ],
    ids=[
        "bare-host",
        "case",
        "port-and-query",
        "query-no-path",
        "fragment-dropped",
        "empty-port",
        "leading-zero-port",
        "trailing-dot",
        "idna",
        "fullwidth",
        "ipv4",
        "fullwidth-ipv4",
        "ipv6-normalised",
        "ipv6-port",
        "percent-kept",
        "non-ascii-path-quoted",
        "underscore",
    ],
)
def test_parse_target_accepts(url: str, expected: Target) -> None:
    assert parse_target(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com/" + "a" * 2048, "longer than 2048"),
        ("http://exa mple.com/", "spaces or control"),
        ("http://example.com/a b", "spaces or control"),
        (" http://example.com/", "spaces or control"),
        ("http://example.com/\t", "spaces or control"),
        ("http://example.com/\n", "spaces or control"),
        ("http://example.com/\x00", "spaces or control"),
        ("http://example.com/\x7f", "spaces or control"),
        ("http://example.com/\u3000", "spaces or control"),
        ("ftp://example.com/", "must start with http:// or https://"),
        ("javascript:alert(1)", "must start with http:// or https://"),
        ("example.com/hook", "must start with http:// or https://"),
        ("http:example.com", "must start with http:// or https://"),
        ("", "must start with http:// or https://"),
        ("http:///hook", "no host"),
        ("http://:80/", "no host"),
        ("http://user:pass@example.com/", "not in the URL"),
        ("http://user@example.com/", "not in the URL"),
        ("http://evil.com\\@good.com/", "not in the URL"),
        ("http://example.com:0/", "1 to 65535"),
        ("http://example.com:65536/", "1 to 65535"),
        ("http://example.com:99999999999999999999/", "1 to 65535"),
        ("http://example.com:http/", "1 to 65535"),
        ("http://example.com:-1/", "1 to 65535"),
        ("http://example.com:\uff18\uff10/", "1 to 65535"),
        ("http://[::1]:x/", "1 to 65535"),
        ("http://[::1/", "not valid"),
        ("http://[::1]x/", "unexpected text"),
        ("http://[1.2.3.4]/", "not valid"),
        ("http://[example.com]/", "not valid"),
        ("http://[fe80::1%25eth0]/", "zone id"),
        ("http://::1/", "brackets"),
        ("http://a..b/", "not a valid host name"),
        ("http://.example.com/", "not a valid host name"),
        ("http://" + "a" * 64 + ".com/", "not a valid host name"),
        ("http://good.com\\evil.com/", "not a valid host name"),
        ("http://exa%6dple.com/", "not a valid host name"),
        ("http://exa<mple.com/", "not a valid host name"),
        ("http://127.1/", "four decimal numbers"),
        ("http://2130706433/", "four decimal numbers"),
        ("http://0x7f.0.0.1/", "four decimal numbers"),
        ("http://0177.0.0.1/", "four decimal numbers"),
        ("http://1.2.3.4.5/", "four decimal numbers"),
    ],
    ids=[
        "too-long",
        "space-in-host",
        "space-in-path",
        "leading-space",
        "tab",
        "newline",
        "nul",
        "del",
        "ideographic-space",
        "ftp",
        "javascript",
        "no-scheme",
        "no-slashes",
        "empty",
        "no-host",
        "port-only",
        "user-and-password",
        "user-only",
        "backslash-userinfo",
        "port-zero",
        "port-too-big",
        "port-huge",
        "port-name",
        "port-negative",
        "port-fullwidth",
        "ipv6-port-name",
        "ipv6-unclosed",
        "ipv6-trailing-text",
        "ipv4-in-brackets",
        "name-in-brackets",
        "ipv6-zone",
        "ipv6-unbracketed",
        "empty-label",
        "leading-dot",
        "label-too-long",
        "backslash-host",
        "percent-host",
        "angle-bracket-host",
        "short-ipv4",
        "integer-ipv4",
        "hex-ipv4",
        "octal-ipv4",
        "five-part-ipv4",
    ],
)
def test_parse_target_refuses(url: str, message: str) -> None:
    with pytest.raises(ValueError, match="webhook URL") as info:
        parse_target(url)
    assert message in str(info.value)


def test_target_urls() -> None:
    target = parse_target("https://Hooks.Example.com/in?a=1")
    assert not target.is_ip_literal
    assert target.url == "https://hooks.example.com/in?a=1"
    assert target.host_header == "hooks.example.com"
    assert target.url_for("93.184.215.14") == "https://93.184.215.14/in?a=1"
    assert target.url_for("2606:2800:21f:cb07:6820:80da:af6b:8b2c") == (
        "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/in?a=1"
    )


def test_target_urls_with_port() -> None:
    target = parse_target("http://example.com:8080/x")
    assert target.url == "http://example.com:8080/x"
    assert target.host_header == "example.com:8080"
    assert target.url_for("192.0.2.1") == "http://192.0.2.1:8080/x"
    assert target.url_for("2001:DB8::1") == "http://[2001:db8::1]:8080/x"
    assert parse_target("https://example.com:443/").url == "https://example.com/"
    assert parse_target("http://example.com:443/").url == "http://example.com:443/"


def test_ipv6_literal_target() -> None:
    target = parse_target("http://[2001:db8::1]:81/")
    assert target.is_ip_literal
    assert target.host == "2001:db8::1"
    assert target.host_header == "[2001:db8::1]:81"
    assert target.url == "http://[2001:db8::1]:81/"
    assert parse_target("http://192.0.2.1/").is_ip_literal


def test_url_for_refuses_a_name() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        parse_target("http://example.com/").url_for("example.org")


def test_normalised_url_parses_to_the_same_target() -> None:
    for url in ("HTTP://Bücher.DE:80/ä?b=ü#x", "https://[2001:DB8::1]:8443", "http://h:/"):
        target = parse_target(url)
        assert parse_target(target.url) == target


# --- blocked_reason --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.0.0.1", "a private network"),
        ("172.16.5.4", "a private network"),
        ("172.31.255.255", "a private network"),
        ("192.168.1.1", "a private network"),
        ("100.64.0.1", "a private network"),
        ("169.254.169.254", "the cloud metadata address"),
        ("fd00:ec2::254", "the cloud metadata address"),
        ("::ffff:169.254.169.254", "the cloud metadata address"),
        ("169.254.1.1", "link-local"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fc00::1", "a private network"),
        ("fd12:3456::1", "a private network"),
        ("fec0::1", "a private network"),
        ("::ffff:10.0.0.1", "a private network"),
        ("::ffff:127.0.0.1", "loopback"),
        ("64:ff9b::7f00:1", "loopback"),
        ("64:ff9b::a9fe:a9fe", "the cloud metadata address"),
        ("2002:c0a8:101::1", "a private network"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 (an address judged, not bound)
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "reserved"),
        ("198.51.100.7", "reserved"),
        ("203.0.113.9", "reserved"),
        ("198.18.0.1", "reserved"),
        ("2001:db8::1", "reserved"),
        ("::7f00:1", "reserved"),
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("172.32.0.1", None),
        ("2001:4860:4860::8888", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),
        ("2002:808:808::1", None),
    ],
    ids=str,
)
def test_blocked_reason(address: str, reason: str | None) -> None:
    assert blocked_reason(address) == reason


def test_blocked_reason_takes_address_objects() -> None:
    assert blocked_reason(ipaddress.ip_address("10.1.2.3")) == "a private network"
    assert blocked_reason(ipaddress.IPv6Address("2001:4860:4860::8844")) is None


def test_blocked_reason_refuses_non_addresses() -> None:
    with pytest.raises(ValueError, match="does not appear"):
        blocked_reason("example.com")


# --- check_url -------------------------------------------------------------------------------


class Fixed:
    """A resolver that always gives the same answer and records the questions."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        return list(self.answers)


async def test_public_target_is_allowed() -> None:
    resolver = Fixed("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "93.184.215.14")
    target, addresses = await check_url(
        "https://Hooks.Example.com/in", allow_private=False, resolver=resolver
    )
    assert target == Target("https", "hooks.example.com", 443, "/in")
    assert addresses == ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]
    assert resolver.asked == [("hooks.example.com", 443)]


async def test_private_target_is_refused() -> None:
    with pytest.raises(UnsafeUrl) as info:
        await check_url("http://nas.lan/", allow_private=False, resolver=Fixed("192.168.1.5"))
    assert str(info.value) == (
        "nas.lan resolves to 192.168.1.5, a private network; "
        "set SIMGATE_WEBHOOK_ALLOW_PRIVATE=true to allow such targets"
    )


async def test_any_private_answer_refuses() -> None:
    resolver = Fixed("8.8.8.8", "169.254.169.254")
    with pytest.raises(UnsafeUrl, match="the cloud metadata address"):
        await check_url("http://mixed.example/", allow_private=False, resolver=resolver)


async def test_private_target_is_allowed_when_configured() -> None:
    target, addresses = await check_url(
        "http://nas.lan:8123/hook", allow_private=True, resolver=Fixed("192.168.1.5", "8.8.8.8")
    )
    assert target.port == 8123
    assert addresses == ["192.168.1.5", "8.8.8.8"]


async def test_dns_rebinding_is_caught_by_the_next_check() -> None:
    answers = [["93.184.215.14"], ["127.0.0.1"]]

    async def rebinding(host: str, port: int) -> list[str]:
        return answers.pop(0)

    url = "https://rebind.example/hook"
    target, addresses = await check_url(url, allow_private=False, resolver=rebinding)
    assert target.url_for(addresses[0]) == "https://93.184.215.14/hook"
    with pytest.raises(UnsafeUrl, match=r"rebind\.example resolves to 127\.0\.0\.1, loopback"):
        await check_url(url, allow_private=False, resolver=rebinding)


async def test_bad_url_is_unsafe_with_the_same_message() -> None:
    with pytest.raises(UnsafeUrl) as info:
        await check_url("ftp://example.com/", allow_private=True, resolver=Fixed("8.8.8.8"))
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match="http") as plain:
        parse_target("ftp://example.com/")
    assert str(info.value) == str(plain.value)


async def test_resolver_failure_is_unsafe() -> None:
    async def failing(host: str, port: int) -> list[str]:
        raise TimeoutError

    with pytest.raises(UnsafeUrl, match=r"cannot resolve 'slow\.example': timed out"):
        await check_url("http://slow.example/", allow_private=False, resolver=failing)
    with pytest.raises(UnsafeUrl, match=r"cannot resolve 'empty\.example': no addresses"):
        await check_url("http://empty.example/", allow_private=False, resolver=Fixed())


async def test_resolver_garbage_is_unsafe() -> None:
    with pytest.raises(UnsafeUrl, match="not an IP address"):
        await check_url("http://odd.example/", allow_private=True, resolver=Fixed("odd"))


async def test_ip_literal_needs_no_dns() -> None:
    assert await resolve("192.0.2.1", 80) == ["192.0.2.1"]
    assert await resolve("2001:db8::1", 80) == ["2001:db8::1"]
    with pytest.raises(UnsafeUrl, match=r"127\.0\.0\.1, loopback"):
        await check_url("http://127.0.0.1:9/", allow_private=False)
    target, addresses = await check_url("http://[::1]:9/", allow_private=True)
    assert addresses == ["::1"]
    assert target.url_for(addresses[0]) == "http://[::1]:9/"


async def test_real_localhost_is_refused() -> None:
    with pytest.raises(UnsafeUrl, match=r"localhost resolves to .*, loopback; set SIMGATE_"):
        await check_url("http://localhost:8080/hook", allow_private=False)


async def test_real_localhost_allowed_when_configured() -> None:
    _, addresses = await check_url("http://localhost:8080/hook", allow_private=True)
    assert addresses
    assert all(blocked_reason(ip) == "loopback" for ip in addresses)


async def test_unresolvable_name() -> None:
    with pytest.raises(UnsafeUrl, match=r"cannot resolve 'nonexistent\.invalid': "):
        await check_url("https://nonexistent.invalid/hook", allow_private=False)
