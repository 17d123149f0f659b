"""The placement rules as tables: which node may run a gateway, what a stored ``host:port``
pin becomes, and the words that say why a gateway does not run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from simgate.domain.placement import (
    GatewayFacts,
    Here,
    NodeSeen,
    PlaceKind,
    Placement,
    Reach,
    ago,
    decide,
    explain,
    from_legacy_pin,
)

PI = Here(node="pi:8123", host_id="host-pi", hostname="pi")
PI_RENAMED = Here(node="garden:8000", host_id="host-pi", hostname="garden")
VM = Here(node="vm:8000", host_id="host-vm", hostname="vm")
ON_PI = Placement.on_host("host-pi", "pi")
UNBOUND_PI = Placement.on_host(None, "pi")  # migrated from "pi:8000"
NODE_B = Placement.on_node("node-b")
ANY = Placement.anywhere()
H, S, A = Reach.HOST, Reach.SOCKET, Reach.ANYWHERE


@pytest.mark.parametrize(
    ("reach", "placement", "here", "kw", "may_run", "bind"),
    [
        # A modem runs on its host, whatever port or name the server has there.
        (H, ON_PI, PI, {}, True, False),
        (H, ON_PI, PI_RENAMED, {}, True, False),
        (H, ON_PI, VM, {}, False, False),
        # ... even while its port is missing: the driver waits for it and says so.
        (H, ON_PI, PI, {"port_present": False}, True, False),
        # A migrated host:port pin is bound by the first node of that hostname.
        (H, UNBOUND_PI, PI, {}, True, True),
        (H, UNBOUND_PI, VM, {}, False, False),
        # On SQLite every node is on one host: a host placement matches (and follows the
        # database to a new machine).
        (H, ON_PI, Here("vm:1", "host-vm", "vm", single_host=True), {}, True, True),
        (H, ON_PI, Here("pi:1", "host-pi", "pi", single_host=True), {}, True, False),
        # A node pin is exact.
        (H, NODE_B, Here("node-b", "host-vm", "vm"), {}, True, False),
        (H, NODE_B, Here("node-a", "host-vm", "vm"), {}, False, False),
        (H, NODE_B, Here("node-b", "x", "x"), {"port_present": False}, True, False),
        # Any node: a modem only where its port is.
        (H, ANY, VM, {}, True, False),
        (H, ANY, VM, {"port_present": False}, False, False),
        # A phone runs where its socket is, and nowhere else.
        (S, ANY, VM, {"connected": True}, True, False),
        (S, ANY, VM, {}, False, False),
        (S, NODE_B, Here("node-b", "h", "h"), {"connected": True}, True, False),
        (S, NODE_B, VM, {"connected": True}, False, False),
        # The fake gateway runs anywhere it is placed.
        (A, ANY, VM, {"port_present": False}, True, False),
        (A, NODE_B, VM, {}, False, False),
        (A, ON_PI, PI_RENAMED, {}, True, False),
    ],
)
def test_who_may_run_a_gateway(
    reach: Reach,
    placement: Placement,
    here: Here,
    kw: dict[str, bool],
    may_run: bool,
    bind: bool,
) -> None:
    verdict = decide(reach, placement, here, **kw)
    assert (verdict.may_run, verdict.bind_host) == (may_run, bind)
    if not may_run:
        assert verdict.reason


@pytest.mark.parametrize(
    ("kind", "pin", "expected"),
    [
        ("modem", "vm:8000", Placement(PlaceKind.HOST, None, "vm")),
        ("modem", "raspberrypi.local:80", Placement(PlaceKind.HOST, None, "raspberrypi.local")),
        ("modem", "garden-pi", Placement.on_node("garden-pi")),  # chosen by a person
        ("modem", None, Placement.anywhere()),
        ("fake", "node-b", Placement.on_node("node-b")),
        ("fake", "vm:8000", Placement.on_node("vm:8000")),  # --set node= was explicit
    ],
)
def test_legacy_pins(kind: str, pin: str | None, expected: Placement) -> None:
    assert from_legacy_pin(kind, pin) == expected


NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def node(name: str, host: str, seconds_ago: float, **kw: object) -> NodeSeen:
    return NodeSeen(
        name=name,
        host_id=f"host-{host}",
        hostname=host,
        last_seen=NOW - timedelta(seconds=seconds_ago),
        **kw,  # type: ignore[arg-type]
    )


A_LIVE = node("node-a", "vm", 3)
B_LIVE = node("node-b", "pi", 5)
B_GONE = node("node-b", "pi", 180)
B_STOPPED = node("node-b", "pi", 20, stopped=True)


def facts(placement: Placement, **kw: object) -> GatewayFacts:
    return GatewayFacts(name="pi", reach=kw.pop("reach", H), placement=placement, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("gateway", "nodes", "words"),
    [
        (facts(ON_PI, holder="node-b"), [A_LIVE, B_LIVE], None),
        (facts(ANY, holder="node-a"), [A_LIVE], None),
        (facts(ON_PI, active=False, deactivated_by="alice"), [B_LIVE], "deactivated by alice"),
        (facts(ON_PI, active=False), [B_LIVE], "deactivated"),
        (
            facts(NODE_B, holder="node-b"),
            [A_LIVE, B_GONE],
            "assigned to node 'node-b', which has not been seen for 3 min",
        ),
        (facts(NODE_B), [A_LIVE, B_STOPPED], "pinned to node 'node-b', which stopped 20 s ago"),
        (facts(NODE_B), [A_LIVE, B_GONE], "pinned to node 'node-b', which has not been seen"),
        (
            facts(Placement.on_node("typo")),
            [A_LIVE, B_LIVE],
            "pinned to node 'typo', which has not run recently (nodes seen: node-a, node-b)",
        ),
        (facts(NODE_B), [A_LIVE, B_LIVE], "starting on node 'node-b'"),
        (
            facts(ON_PI),
            [A_LIVE],
            "placed on host 'pi', where no simgate server has run recently (nodes seen: node-a)",
        ),
        (facts(ON_PI), [A_LIVE, B_GONE], "placed on host 'pi', whose last server 'node-b' has"),
        (facts(UNBOUND_PI), [A_LIVE, B_LIVE], "starting on host 'pi'"),
        (
            facts(ANY, port="/dev/ttyUSB0"),
            [
                node("node-a", "vm", 1, missing_ports=frozenset({"/dev/ttyUSB0"})),
                node("node-b", "pi", 1, missing_ports=frozenset({"/dev/ttyUSB0", "/dev/x"})),
            ],
            "port /dev/ttyUSB0 does not exist on any running node (node-a, node-b)",
        ),
        (facts(ANY, port="/dev/ttyUSB0"), [], "no simgate server is running"),
        (
            facts(ANY, port="/dev/ttyUSB0"),
            [B_GONE],
            "no simgate server is running (the last, 'node-b', has not been seen for 3 min)",
        ),
        (facts(ANY, reach=S), [A_LIVE], "not connected"),
    ],
)
def test_why_a_gateway_does_not_run(
    gateway: GatewayFacts, nodes: list[NodeSeen], words: str | None
) -> None:
    found = explain(gateway, nodes, NOW, alive_within=30)
    if words is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(words), found


def test_on_sqlite_any_node_is_on_the_host() -> None:
    found = explain(facts(ON_PI), [A_LIVE], NOW, alive_within=30, single_host=True)
    assert found == "starting on host 'pi'"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (45, "45 s"), (89, "89 s"), (180, "3 min"), (7200, "2 h"), (3 * 86400, "3 days")],
)
def test_ago(seconds: float, text: str) -> None:
    assert ago(seconds) == text


def test_describe() -> None:
    assert ON_PI.describe() == "host 'pi'"
    assert NODE_B.describe() == "node 'node-b'"
    assert ANY.describe() == "any node"
