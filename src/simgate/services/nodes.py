"""Nodes: the running ``simgate serve`` processes, the host each runs on, and their
heartbeat in the database, which tells the other nodes (and people) who is alive.

A host is known by a stable id rather than its hostname (Raspberry Pi images are often
renamed after the first boot): ``SIMGATE_HOST_ID`` if set, else derived from the OS's
machine id (``/etc/machine-id``, hashed, since that id should not be shown), else a random
id kept in the data directory. Every process of one host agrees on it, whatever port or
node name it has, so the command line and the server agree too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from simgate import __version__
from simgate.config import Settings
from simgate.domain.placement import Here, NodeSeen, ago
from simgate.store.models import Node
from simgate.store.types import utcnow

MACHINE_ID_PATHS = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
HOST_ID_FILE = "host-id"
HEARTBEAT = 10.0  # seconds between a node's heartbeats (and gateway claims)
ALIVE_WITHIN = 3 * HEARTBEAT  # a node that missed three heartbeats is not running
SEEN_WITHIN = timedelta(days=7)  # nodes named in explanations ("nodes seen: …")
FORGET_AFTER = timedelta(days=30)
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class HostIdentity:
    id: str
    hostname: str
    boot_id: str  # changes at every boot: a process recorded under another is gone
    pid_ns: str  # the PID namespace: pids compare only within one


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _stored_id(data_dir: Path) -> str:
    """A random id kept in the data directory, made once (for hosts without a machine id)."""
    path = data_dir / HOST_ID_FILE
    found = _read(path)
    if _ID_RE.match(found):
        return found
    data_dir.mkdir(parents=True, exist_ok=True)
    made = secrets.token_hex(10)
    try:
        with path.open("x") as f:  # two processes racing: the first one's id wins
            f.write(made + "\n")
    except FileExistsError:
        return _read(path) or made
    return made


def host_identity(
    settings: Settings, *, machine_id_paths: Sequence[Path] = MACHINE_ID_PATHS
) -> HostIdentity:
    if settings.host_id:
        host_id = settings.host_id
    else:
        machine = next((v for p in machine_id_paths if (v := _read(p))), "")
        if re.fullmatch(r"[0-9a-fA-F]{32}", machine):
            digest = hashlib.sha256(b"simgate host id\0" + machine.lower().encode()).hexdigest()
            host_id = digest[:20]
        else:
            host_id = _stored_id(settings.data_dir)
    pid_ns = ""
    with contextlib.suppress(OSError):
        pid_ns = str(os.stat("/proc/self/ns/pid").st_ino)
    return HostIdentity(
        host_id,
        socket.gethostname(),
        _read(Path("/proc/sys/kernel/random/boot_id")),
        pid_ns,
    )


def here(settings: Settings, identity: HostIdentity) -> Here:
    return Here(
        node=settings.node,
        host_id=identity.id,
        hostname=identity.hostname,
        single_host=settings.backend == "sqlite",
    )


# --- heartbeats ----------------------------------------------------------------------------


async def heartbeat(
    session: AsyncSession,
    *,
    settings: Settings,
    identity: HostIdentity,
    started_at: datetime,
    now: datetime,
    missing_ports: Sequence[str] = (),
) -> None:
    """Record that this node is alive, on which host, and what it noticed."""
    values: dict[str, Any] = {
        "host_id": identity.id,
        "hostname": identity.hostname[:255],
        "pid": os.getpid(),
        "address": f"{settings.host}:{settings.port}"[:255],
        "version": __version__,
        "started_at": started_at,
        "last_seen_at": now,
        "stopped_at": None,
        "detail": {
            "boot_id": identity.boot_id,
            "pid_ns": identity.pid_ns,
            "missing_ports": sorted(missing_ports),
        },
    }
    result = await session.execute(update(Node).where(Node.name == settings.node).values(**values))
    if getattr(result, "rowcount", 0):
        return
    try:
        async with session.begin_nested():
            session.add(Node(name=settings.node, **values))
    except IntegrityError:  # another process of the same name won the race: update it
        await session.execute(update(Node).where(Node.name == settings.node).values(**values))


async def stopped(session: AsyncSession, *, node: str) -> None:
    await session.execute(update(Node).where(Node.name == node).values(stopped_at=utcnow()))


async def seen(session: AsyncSession, *, now: datetime | None = None) -> list[Node]:
    """The nodes heard from in the last week, most recent first."""
    cutoff = (now or utcnow()) - SEEN_WITHIN
    rows = await session.scalars(
        select(Node).where(Node.last_seen_at >= cutoff).order_by(Node.last_seen_at.desc())
    )
    return list(rows)


def as_seen(rows: Sequence[Node]) -> list[NodeSeen]:
    return [
        NodeSeen(
            name=n.name,
            host_id=n.host_id,
            hostname=n.hostname,
            last_seen=n.stopped_at or n.last_seen_at,  # a stopped node: when it stopped
            stopped=n.stopped_at is not None,
            missing_ports=frozenset((n.detail or {}).get("missing_ports") or ()),
        )
        for n in rows
    ]


def process_gone(node: Node, identity: HostIdentity) -> bool:
    """Whether ``node``'s process has certainly ended: it ran on this host, and either the
    host rebooted since or its pid (in our PID namespace) is no longer running. Lets a
    restarted server take over its host's gateways at once instead of waiting out the
    heartbeat (the usual case after a crash, or a restart on another port)."""
    if node.host_id != identity.id:
        return False
    if node.stopped_at is not None:
        return True
    detail = node.detail or {}
    if identity.boot_id and detail.get("boot_id") and detail["boot_id"] != identity.boot_id:
        return True
    if not identity.pid_ns or detail.get("pid_ns") != identity.pid_ns:
        return False  # another container or an unknown namespace: pids mean nothing here
    if node.pid == os.getpid():
        return False
    try:
        os.kill(node.pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists, owned by someone else
    return False


def describe_recent(rows: Sequence[Node], now: datetime) -> str:
    """'a (host vm, 5 s ago), b (host pi, stopped)' for warnings that name nodes."""
    parts = []
    for n in rows[:8]:
        state = "stopped" if n.stopped_at else f"{ago((now - n.last_seen_at).total_seconds())} ago"
        parts.append(f"{n.name} (host {n.hostname}, {state})")
    return ", ".join(parts) or "none"


async def prune(session: AsyncSession) -> int:
    result = await session.execute(delete(Node).where(Node.last_seen_at < utcnow() - FORGET_AFTER))
    return int(getattr(result, "rowcount", 0) or 0)
