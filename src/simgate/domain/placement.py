"""Which node runs a gateway, and, when none does, why: in words for people.

The rules, in one place:

- A **serial modem** is plugged into a *host*, not into a process. By default it runs on
  any node of the host where it was added, whatever port or name the server has there; the
  host is known by a stable id (not its hostname, which Raspberry Pi images often change
  after the first boot). An admin may pin it to one named node instead, or let any node
  that has the port run it. A node of its host starts it even while the port is missing
  (the driver waits for it to be plugged in and says so).
- A **phone** runs on whichever node holds its WebSocket; placement cannot move a socket.
- A gateway that **needs nothing local** (the fake gateway) runs anywhere it is placed.
- Exactly one node runs a gateway at a time: the nodes claim it with a heartbeat in the
  database (``services.gateways``); these functions only say who *may*.

On SQLite every node shares one database file, and WAL needs shared memory, so they all run
on one host: a host placement then matches any node (and follows the database when it is
copied to a new machine).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

# Node names and host ids: what SIMGATE_NODE_NAME (default "<hostname>:<port>") may be.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:_-]{0,63}$")


class Reach(enum.StrEnum):
    """What a kind of gateway needs from the node that runs it."""

    HOST = "host"  # a device plugged into the host (serial modems)
    SOCKET = "socket"  # its own connection to one node (phones)
    ANYWHERE = "anywhere"  # nothing local (the fake gateway)


class PlaceKind(enum.StrEnum):
    HOST = "host"  # any node of one host
    NODE = "node"  # one named node
    ANY = "any"  # any node (that can reach it)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a gateway may run. ``host_id`` is None for a host placement that was made
    before hosts had ids (migrated from ``host:port`` pins): the first node whose hostname
    matches binds it."""

    kind: PlaceKind = PlaceKind.ANY
    host_id: str | None = None
    host_name: str = ""
    node: str | None = None

    @classmethod
    def anywhere(cls) -> Placement:
        return cls(PlaceKind.ANY)

    @classmethod
    def on_host(cls, host_id: str | None, host_name: str) -> Placement:
        return cls(PlaceKind.HOST, host_id=host_id, host_name=host_name)

    @classmethod
    def on_node(cls, node: str) -> Placement:
        return cls(PlaceKind.NODE, node=node)

    def describe(self) -> str:
        if self.kind is PlaceKind.HOST:
            return f"host {self.host_name or self.host_id or '?'!r}"
        if self.kind is PlaceKind.NODE:
            return f"node {self.node!r}"
        return "any node"


@dataclass(frozen=True, slots=True)
class Here:
    """The node asking. ``single_host``: every node of this database runs on one host."""

    node: str
    host_id: str
    hostname: str
    single_host: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    may_run: bool
    reason: str = ""  # why not (when it is this node's own business, like a missing port)
    bind_host: bool = False  # record this node's host as the placement's host


_YES = Verdict(True)


def _on_this_host(placement: Placement, here: Here) -> Verdict:
    if here.single_host:
        return Verdict(True, bind_host=placement.host_id != here.host_id)
    if placement.host_id is not None:
        return _YES if placement.host_id == here.host_id else Verdict(False, "another host")
    if placement.host_name and placement.host_name == here.hostname:
        return Verdict(True, bind_host=True)
    return Verdict(False, "another host")


def decide(
    reach: Reach,
    placement: Placement,
    here: Here,
    *,
    port_present: bool = True,
    connected: bool = False,
) -> Verdict:
    """May the node ``here`` run a gateway of this reach and placement?

    ``port_present``: a serial gateway's port exists on this host; ``connected``: a
    phone's socket is held by this node."""
    if reach is Reach.SOCKET:
        if not connected:
            return Verdict(False, "not connected to this node")
        if placement.kind is PlaceKind.NODE and placement.node != here.node:
            return Verdict(False, f"pinned to node {placement.node!r}")
        return _YES
    if placement.kind is PlaceKind.NODE:
        return _YES if placement.node == here.node else Verdict(False, "another node")
    if placement.kind is PlaceKind.HOST:
        return _on_this_host(placement, here)
    if reach is Reach.HOST and not port_present:
        return Verdict(False, "port missing")
    return _YES


# --- why a gateway does not run ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeSeen:
    """A node as the database last heard of it."""

    name: str
    host_id: str
    hostname: str
    last_seen: datetime
    stopped: bool = False
    missing_ports: frozenset[str] = field(default_factory=frozenset)

    def alive(self, now: datetime, within: float) -> bool:
        return not self.stopped and (now - self.last_seen).total_seconds() <= within


@dataclass(frozen=True, slots=True)
class GatewayFacts:
    name: str
    reach: Reach
    placement: Placement
    active: bool = True
    deactivated_by: str | None = None
    holder: str | None = None  # the node that claimed it last
    port: str | None = None


def ago(seconds: float) -> str:
    """A duration for people: '45 s', '3 min', '2 h', '3 days'."""
    s = max(0, int(seconds))
    if s < 90:
        return f"{s} s"
    if s < 90 * 60:
        return f"{round(s / 60)} min"
    if s < 36 * 3600:
        return f"{round(s / 3600)} h"
    return f"{round(s / 86400)} days"


def _last_heard(node: NodeSeen, now: datetime) -> str:
    age = ago((now - node.last_seen).total_seconds())
    return f"stopped {age} ago" if node.stopped else f"has not been seen for {age}"


def _names(nodes: Iterable[NodeSeen]) -> str:
    return ", ".join(sorted(n.name for n in nodes)) or "none"


def _of_host(placement: Placement, nodes: Iterable[NodeSeen], single_host: bool) -> list[NodeSeen]:
    if single_host:
        return list(nodes)
    return [
        n
        for n in nodes
        if (n.host_id == placement.host_id)
        or (placement.host_id is None and n.hostname == placement.host_name)
    ]


def _latest(nodes: Sequence[NodeSeen]) -> NodeSeen:
    return max(nodes, key=lambda n: n.last_seen)


def explain(
    g: GatewayFacts,
    nodes: Sequence[NodeSeen],
    now: datetime,
    *,
    alive_within: float,
    single_host: bool = False,
) -> str | None:
    """Why ``g`` does not run now, or None when a live node runs it. ``nodes``: the nodes
    seen recently; ``alive_within``: seconds after its last heartbeat a node counts as
    running."""
    if not g.active:
        return f"deactivated by {g.deactivated_by}" if g.deactivated_by else "deactivated"
    by_name = {n.name: n for n in nodes}
    alive = [n for n in nodes if n.alive(now, alive_within)]
    if g.holder is not None:
        holder = by_name.get(g.holder)
        if holder is not None and holder.alive(now, alive_within):
            return None
        if holder is not None and not holder.stopped:
            return f"assigned to node {g.holder!r}, which {_last_heard(holder, now)}"
    p = g.placement
    if g.reach is Reach.SOCKET:
        return "not connected: the phone has no open connection to any running node"
    if p.kind is PlaceKind.NODE:
        pinned = by_name.get(p.node or "")
        if pinned is None:
            seen = _names(nodes)
            return f"pinned to node {p.node!r}, which has not run recently (nodes seen: {seen})"
        if not pinned.alive(now, alive_within):
            return f"pinned to node {p.node!r}, which {_last_heard(pinned, now)}"
        return f"starting on node {p.node!r}"
    if p.kind is PlaceKind.HOST:
        there = _of_host(p, nodes, single_host)
        where = p.describe()
        if not there:
            return (
                f"placed on {where}, where no simgate server has run recently "
                f"(nodes seen: {_names(nodes)}); start 'simgate serve' there or move it"
            )
        if not [n for n in there if n in alive]:
            latest = _latest(there)
            return (
                f"placed on {where}, whose last server {latest.name!r} {_last_heard(latest, now)}"
            )
        return f"starting on {where}"
    if not alive:
        if not nodes:
            return "no simgate server is running"
        latest = _latest(nodes)
        return (
            f"no simgate server is running (the last, {latest.name!r}, {_last_heard(latest, now)})"
        )
    if g.reach is Reach.HOST and g.port and all(g.port in n.missing_ports for n in alive):
        return f"port {g.port} does not exist on any running node ({_names(alive)})"
    return "starting"


_LEGACY_PIN = re.compile(r"^(?P<host>[^:\s]+):(?P<port>\d{1,5})$")


def from_legacy_pin(kind: str, pin: str | None) -> Placement:
    """The placement of a gateway stored before placements existed, from its ``node``
    option. ``modem add`` wrote ``<hostname>:<port>`` by default, which meant "this host"
    (a modem is plugged into a host, not into a port): that becomes a host placement, bound
    to a host id by the first node of that hostname. Any other value was chosen by a person
    and stays a node pin."""
    if not pin:
        return Placement.anywhere()
    match = _LEGACY_PIN.match(pin)
    if kind == "modem" and match:
        return Placement.on_host(None, match.group("host"))
    return Placement.on_node(pin)
