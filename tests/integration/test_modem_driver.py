"""The serial modem driver, for real: ``ModemGateway`` opens a real pseudo-terminal (through
pyserial-asyncio-fast, as it opens /dev/ttyUSB0) with the SIM800L simulator on the other
side, and is judged by what it reports through its ``GatewayEvents`` and by what the
simulated network received. No mocks: faults are the simulator's own.

Waits are polls with generous bounds; nothing here asserts how long something took.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import serial

from simgate.domain.encoding import segment_info
from simgate.domain.messages import MessageError, Received
from simgate.domain.modem_errors import lookup
from simgate.domain.retry import ErrorKind
from simgate.drivers.base import GatewayStatus, OutboundSms, SendOutcome
from simgate.drivers.modem import ModemConfig, ModemGateway, ModemProblem
from simgate.modem_sim import Faults, PtyModem, SimModem, Timings
from simgate.modem_sim import ModemConfig as SimConfig
from simgate.protocols.pdu import Submit, decode

TO = "+4915112345678"
SENDER = "+4917198765432"
WAIT = 15.0  # the bound of every wait; a healthy run needs a fraction of it


# --- what the gateway reports ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Report:
    gateway: str
    message_id: str | None
    gateway_ref: str | None
    delivered: bool
    error: MessageError | None


@dataclass
class Events:
    """Records everything a gateway reports, in order."""

    reports: list[Report] = field(default_factory=list)
    statuses: list[tuple[str, GatewayStatus, str]] = field(default_factory=list)
    inbox: list[Received] = field(default_factory=list)

    async def delivery_report(
        self,
        gateway: str,
        *,
        message_id: str | None,
        gateway_ref: str | None,
        delivered: bool,
        error: MessageError | None = None,
    ) -> None:
        self.reports.append(Report(gateway, message_id, gateway_ref, delivered, error))

    async def status_changed(self, gateway: str, status: GatewayStatus, detail: str) -> None:
        self.statuses.append((gateway, status, detail))

    async def received(self, item: Received) -> None:
        self.inbox.append(item)

    def reports_for(self, message_id: str) -> list[Report]:
        return [r for r in self.reports if r.message_id == message_id]

    def errors(self, since: int = 0) -> list[str]:
        """Details of the ``error`` statuses reported (from the ``since``-th on)."""
        return [d for _, s, d in self.statuses[since:] if s is GatewayStatus.ERROR]


# --- waiting -------------------------------------------------------------------------------


async def until(check: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            pytest.fail(f"gave up after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)


async def online(gw: ModemGateway) -> None:
    await until(lambda: gw.online, f"{gw.name} online (is {gw.status}: {gw.status_detail})")


async def in_error(gw: ModemGateway, events: Events, since: int = 0) -> str:
    """Wait until the gateway is in ``error`` (and reported so); the detail."""
    await until(
        lambda: gw.status is GatewayStatus.ERROR and events.errors(since),
        f"{gw.name} in error (is {gw.status}: {gw.status_detail})",
    )
    return gw.status_detail


# --- the rig ---------------------------------------------------------------------------------


class Rig:
    """Simulated modems on ptys and drivers on them; everything is stopped at the end."""

    def __init__(self, directory: Path, stack: AsyncExitStack) -> None:
        self.directory = directory
        self.stack = stack

    async def sim(
        self,
        name: str = "modem0",
        *,
        config: SimConfig | None = None,
        faults: Faults | None = None,
        timings: Timings | None = None,
        booted: bool = False,
    ) -> PtyModem:
        modem = SimModem(
            config, faults, timings=timings or Timings(), now=time.time(), booted=booted
        )
        pty = PtyModem(modem, link=self.directory / name)
        return await self.stack.enter_async_context(pty)

    async def gateway(
        self, sim: PtyModem, name: str = "m1", **options: Any
    ) -> tuple[ModemGateway, Events]:
        """A started driver on ``sim``'s linked path (not necessarily online yet)."""
        options.setdefault("poll_interval", 0.5)
        gw = ModemGateway(name, ModemConfig(port=sim.path, **options))
        events = Events()
        self.stack.push_async_callback(gw.stop)
        await gw.start(events)
        return gw, events

    async def online_gateway(
        self, sim: PtyModem, name: str = "m1", **options: Any
    ) -> tuple[ModemGateway, Events]:
        gw, events = await self.gateway(sim, name, **options)
        await online(gw)
        return gw, events


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with AsyncExitStack() as stack:
        yield Rig(tmp_path, stack)


# --- messages ------------------------------------------------------------------------------


def sms(message_id: str, body: str, to: str = TO) -> OutboundSms:
    info = segment_info(body)
    return OutboundSms(message_id, to, body, info.encoding.value, info.segments, 0, 1)


def network_got(sim: PtyModem, first: int = 0) -> list[Submit]:
    """The SMS-SUBMITs the simulated network received (from the ``first``-th on), decoded
    with our own codec from the PDUs the driver wrote."""
    decoded = []
    for sent in sim.modem.sent[first:]:
        assert sent.pdu is not None, "the driver should use PDU mode"
        submit = decode(sent.pdu, has_smsc=True)
        assert isinstance(submit, Submit), submit
        decoded.append(submit)
    return decoded


def joined(parts: list[Submit]) -> str:
    ordered = sorted(parts, key=lambda p: p.concat.seq if p.concat else 0)
    return "".join(p.text for p in ordered)


async def send_ok(gw: ModemGateway, message_id: str, body: str) -> SendOutcome:
    outcome = await gw.send(sms(message_id, body))
    assert outcome.ok, outcome.error
    return outcome


async def delivered(events: Events, message_id: str) -> Report:
    await until(lambda: events.reports_for(message_id), f"a delivery report on {message_id}")
    (report,) = events.reports_for(message_id)
    return report


# --- sending ---------------------------------------------------------------------------------


async def test_send_short_and_delivery_report(rig: Rig) -> None:
    sim = await rig.sim()
    gw, events = await rig.online_gateway(sim)
    assert gw.health.model == "SIMCOM_SIM800L"
    assert gw.health.imei == "866262037741234"
    assert gw.health.registered
    assert gw.health.operator == "Telekom.de"
    assert gw.health.signal_dbm == -113 + 2 * 18

    outcome = await send_ok(gw, "msg_short", "Hello from simgate")

    (submit,) = network_got(sim)
    assert str(submit.destination) == TO
    assert submit.text == "Hello from simgate"
    assert submit.concat is None
    assert submit.status_report_request
    assert outcome.gateway_ref == str(sim.modem.sent[0].mr)
    report = await delivered(events, "msg_short")
    assert report == Report("m1", "msg_short", outcome.gateway_ref, True, None)


async def test_send_long_is_delivered_once_every_part_is(rig: Rig) -> None:
    sim = await rig.sim()
    gw, events = await rig.online_gateway(sim)
    body = " ".join(f"word{i}" for i in range(60))  # 3 GSM-7 parts
    assert segment_info(body).segments == 3

    outcome = await send_ok(gw, "msg_long", body)

    parts = network_got(sim)
    assert len(parts) == 3
    assert {str(p.destination) for p in parts} == {TO}
    assert sorted(p.concat.seq for p in parts if p.concat) == [1, 2, 3]
    assert {p.concat.total for p in parts if p.concat} == {3}
    assert len({p.concat.ref for p in parts if p.concat}) == 1
    assert joined(parts) == body
    mrs = [s.mr for s in sim.modem.sent]
    assert outcome.gateway_ref == ",".join(map(str, mrs))

    report = await delivered(events, "msg_long")
    assert report.delivered
    assert report.error is None
    # The reports come in the order of the parts: the one that completes the message is
    # the last part's, so no earlier report marked it delivered on its own.
    assert report.gateway_ref == str(mrs[-1])
    await asyncio.sleep(1.0)  # any further (wrong) report would arrive by now
    assert len(events.reports_for("msg_long")) == 1


async def test_send_unicode(rig: Rig) -> None:
    sim = await rig.sim()
    gw, events = await rig.online_gateway(sim)
    body = "Grüße aus Köln — Привет, мир! 你好"

    await send_ok(gw, "msg_uni", body)

    (submit,) = network_got(sim)
    assert str(submit.destination) == TO
    assert submit.text == body
    assert (await delivered(events, "msg_uni")).delivered


async def test_send_emoji_long_keeps_surrogate_pairs_whole(rig: Rig) -> None:
    sim = await rig.sim()
    gw, events = await rig.online_gateway(sim)
    body = "Party 🎉 " + "😀" * 40 + " 👍🏽 done"  # > 70 UTF-16 units: concatenated UCS-2
    assert segment_info(body).segments > 1

    await send_ok(gw, "msg_emoji", body)

    parts = network_got(sim)
    assert len(parts) == segment_info(body).segments
    for part in parts:
        assert str(part.destination) == TO
        part.text.encode("utf-8")  # no part ends in half a surrogate pair
    assert joined(parts) == body
    report = await delivered(events, "msg_emoji")
    assert report.delivered


async def test_failed_status_report_is_reported_not_delivered(rig: Rig) -> None:
    sim = await rig.sim(faults=Faults(report_status=0x46))  # validity period expired
    gw, events = await rig.online_gateway(sim)

    outcome = await send_ok(gw, "msg_fail", "Nobody will read this")

    report = await delivered(events, "msg_fail")
    assert not report.delivered
    assert report.gateway_ref == outcome.gateway_ref
    assert report.error is not None
    assert report.error.code == "undelivered"
    assert "validity period expired" in report.error.message
    assert report.error.hint


async def test_one_failed_part_fails_a_long_message(rig: Rig) -> None:
    sim = await rig.sim(faults=Faults(report_status=0x41))  # incompatible destination
    gw, events = await rig.online_gateway(sim)

    await send_ok(gw, "msg_long_fail", "x" * 200)  # two parts

    assert len(sim.modem.sent) == 2
    report = await delivered(events, "msg_long_fail")
    assert not report.delivered
    assert report.error is not None
    await asyncio.sleep(1.0)  # the second part's report must not add a second verdict
    assert len(events.reports_for("msg_long_fail")) == 1


# --- receiving -------------------------------------------------------------------------------


def assert_fresh(item: Received) -> None:
    assert item.received_at.tzinfo is not None
    assert abs(item.received_at - datetime.now(UTC)) < timedelta(minutes=5)


async def test_inbound_single(rig: Rig) -> None:
    sim = await rig.sim()
    _gw, events = await rig.online_gateway(sim)

    assert sim.inject_sms(SENDER, "Hallo simgate, alles gut?") == 1

    await until(lambda: events.inbox, "the message in the inbox")
    (item,) = events.inbox
    assert (item.gateway, item.sender, item.body) == ("m1", SENDER, "Hallo simgate, alles gut?")
    assert (item.parts, item.incomplete) == (1, False)
    assert_fresh(item)
    # Stored durably, then deleted from the SIM so it does not fill up.
    await until(lambda: sim.modem.state.memories["SM"].used == 0, "the SIM slot freed")


async def test_inbound_carries_the_number_that_received_it(rig: Rig) -> None:
    """The SIM's own number (AT+CNUM) is the inbound message's ``to``."""
    sim = await rig.sim()
    gw, events = await rig.online_gateway(sim)
    assert gw.own_number == SimConfig().number
    sim.inject_sms(SENDER, "for the SIM's number")
    await until(lambda: events.inbox, "the message in the inbox")
    assert events.inbox[0].to == SimConfig().number


async def test_a_configured_number_stands_in_for_a_sim_that_keeps_none(rig: Rig) -> None:
    sim = await rig.sim(config=SimConfig(number=None))
    gw, events = await rig.online_gateway(sim, number="+4915790001234")
    assert gw.health.number == ""
    sim.inject_sms(SENDER, "to the configured number")
    await until(lambda: events.inbox, "the message in the inbox")
    assert events.inbox[0].to == "+4915790001234"


async def test_without_any_number_to_stays_empty(rig: Rig) -> None:
    sim = await rig.sim(config=SimConfig(number=None))
    gw, events = await rig.online_gateway(sim)
    sim.inject_sms(SENDER, "nobody knows my number")
    await until(lambda: events.inbox, "the message in the inbox")
    assert (gw.own_number, events.inbox[0].to) == ("", "")


async def test_inbound_multipart_out_of_order(rig: Rig) -> None:
    sim = await rig.sim()
    _gw, events = await rig.online_gateway(sim)
    text = "Dies ist eine lange Nachricht. " * 3 + "Ende 😀"

    parts = sim.inject_sms("Shop", text, order=[1, 0])  # alphanumeric sender, UCS-2
    assert parts == 2

    await until(lambda: events.inbox, "the reassembled message in the inbox")
    (item,) = events.inbox
    assert (item.sender, item.body, item.parts, item.incomplete) == ("Shop", text, parts, False)
    assert_fresh(item)
    await until(lambda: sim.modem.state.memories["SM"].used == 0, "the SIM slots freed")
    await asyncio.sleep(0.5)
    assert len(events.inbox) == 1


async def test_inbound_stored_while_the_driver_was_not_running(rig: Rig) -> None:
    sim = await rig.sim()
    sim.inject_sms(SENDER, "sent while simgate was down")
    sim.inject_sms("+4930123456", "y" * 250, order=[1, 0])
    assert sim.modem.state.memories["SM"].used == 3

    _gw, events = await rig.online_gateway(sim)

    await until(lambda: len(events.inbox) >= 2, "both stored messages in the inbox")
    got = sorted((i.sender, i.body, i.parts, i.incomplete) for i in events.inbox)
    assert got == [
        (SENDER, "sent while simgate was down", 1, False),
        ("+4930123456", "y" * 250, 2, False),
    ]
    assert sim.modem.state.memories["SM"].used == 0  # read with AT+CMGL, then deleted
    await asyncio.sleep(0.5)
    assert len(events.inbox) == 2


async def test_inbound_part_that_never_comes_is_delivered_incomplete(rig: Rig) -> None:
    """The second part is late beyond the reassembly timeout: what arrived is delivered,
    marked incomplete, and the straggler is not lost either."""
    sim = await rig.sim(timings=Timings(part_gap=4.0))
    _gw, events = await rig.online_gateway(sim, poll_interval=0.2, reassembly_timeout=1.0)
    first, second = "a" * 153, "b" * 47  # GSM-7: 153 septets per part

    assert sim.inject_sms(SENDER, first + second) == 2

    await until(lambda: events.inbox, "the first part, given up on")
    (item,) = events.inbox
    assert item.incomplete
    assert item.sender == SENDER
    assert item.parts == 2
    assert first in item.body
    assert "[part 2 of 2 missing]" in item.body
    await until(lambda: len(events.inbox) == 2, "the straggler, given up on too")
    assert events.inbox[1].incomplete
    assert second in events.inbox[1].body
    assert "[part 1 of 2 missing]" in events.inbox[1].body


# --- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [500, 330, 304])
async def test_cms_error_on_send(rig: Rig, code: int) -> None:
    sim = await rig.sim()
    gw, events = await rig.online_gateway(sim)
    sim.update_faults(cms_error=code)  # one shot

    outcome = await gw.send(sms("msg_cms", "this one fails"))

    expected = lookup("CMS", code)
    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error.code == f"cms_{code}"
    assert outcome.error.message == expected.meaning
    assert outcome.error.hint
    assert outcome.error.hint == expected.hint
    assert outcome.kind is expected.retry
    assert sim.modem.sent == []
    # The modem itself is fine: the gateway stays online and the retry goes through.
    assert gw.online
    await send_ok(gw, "msg_cms", "this one fails")
    assert (await delivered(events, "msg_cms")).delivered


async def test_no_registration(rig: Rig) -> None:
    sim = await rig.sim(faults=Faults(registration=3))  # registration denied
    gw, events = await rig.gateway(sim)

    detail = await in_error(gw, events)
    assert "not registered" in detail
    assert "antenna" in detail  # with a hint
    assert not gw.health.registered

    outcome = await gw.send(sms("msg_noreg", "no network"))
    assert not outcome.ok
    assert outcome.kind is ErrorKind.GATEWAY
    assert outcome.error is not None
    assert "not registered" in outcome.error.message
    assert sim.modem.sent == []

    sim.update_faults(registration=None)  # the network comes back
    await online(gw)
    await send_ok(gw, "msg_noreg", "network again")
    assert (await delivered(events, "msg_noreg")).delivered


async def test_registration_lost_mid_session(rig: Rig) -> None:
    sim = await rig.sim()
    gw, events = await rig.online_gateway(sim)
    mark = len(events.statuses)

    sim.update_faults(registration=2)

    assert "registration" in await in_error(gw, events, mark)
    outcome = await gw.send(sms("msg_lost", "no network"))
    assert (outcome.ok, outcome.kind) == (False, ErrorKind.GATEWAY)
    sim.update_faults(registration=None)
    await online(gw)
    await send_ok(gw, "msg_lost", "network again")


async def test_sim_missing(rig: Rig) -> None:
    sim = await rig.sim(faults=Faults(sim_missing=True))
    gw, events = await rig.gateway(sim)

    detail = await in_error(gw, events)
    assert "SIM not inserted" in detail
    assert "Reseat the SIM" in detail  # the hint
    outcome = await gw.send(sms("msg_nosim", "no SIM"))
    assert (outcome.ok, outcome.kind) == (False, ErrorKind.GATEWAY)

    sim.update_faults(sim_missing=False)  # the SIM is put back
    await online(gw)
    await send_ok(gw, "msg_nosim", "SIM back")


async def test_sim_pin_right_pin_unlocks(rig: Rig) -> None:
    sim = await rig.sim(config=SimConfig(pin="4711"))
    gw, events = await rig.online_gateway(sim, pin="4711")

    assert sim.modem.state.sim_status() == "READY"
    assert sim.modem.state.pin_left == 3
    await send_ok(gw, "msg_pin", "unlocked")
    assert (await delivered(events, "msg_pin")).delivered


async def test_sim_pin_wrong_pin_is_not_retried(rig: Rig) -> None:
    sim = await rig.sim(config=SimConfig(pin="4711", pin_attempts=3))
    gw, events = await rig.gateway(sim, pin="1234")

    detail = await in_error(gw, events)
    assert "PIN" in detail
    assert "not try again" in detail
    # Long enough for several reconnect attempts, had the driver made any.
    await asyncio.sleep(4.0)
    assert sim.modem.state.pin_left == 2  # one attempt used, two left: the SIM is not locked
    assert sim.modem.state.sim_status() == "SIM PIN"
    assert gw.status is GatewayStatus.ERROR
    outcome = await gw.send(sms("msg_wrongpin", "locked"))
    assert (outcome.ok, outcome.kind) == (False, ErrorKind.GATEWAY)


async def test_sim_pin_needed_but_not_configured(rig: Rig) -> None:
    sim = await rig.sim(config=SimConfig(pin="4711"))
    gw, events = await rig.gateway(sim)

    assert "needs a PIN" in await in_error(gw, events)
    await asyncio.sleep(2.0)
    assert sim.modem.state.pin_left == 3  # nothing was guessed


def reinitialised(sim: PtyModem) -> bool:
    """The driver's settings are in place: echo off, numeric errors, +CMTI and +CDS."""
    profile = sim.modem.state.profile
    return (profile.echo, profile.cmee, profile.cnmi) == (False, 1, (2, 1, 0, 1, 0))


async def test_brown_out_mid_session(rig: Rig) -> None:
    sim = await rig.sim()
    gw, events = await rig.online_gateway(sim)
    assert reinitialised(sim)
    mark = len(events.statuses)

    sim.brown_out()  # UNDER-VOLTAGE WARNNING, then RDY … SMS Ready: every setting is gone

    await in_error(gw, events, mark)
    await asyncio.sleep(1.0)  # the reset is over (Timings.reboot is 0.1 s)
    await until(lambda: reinitialised(sim), "the driver re-initialising the modem")
    await online(gw)
    await send_ok(gw, "msg_after_brownout", "still here")
    assert (await delivered(events, "msg_after_brownout")).delivered
    sim.inject_sms(SENDER, "and receiving")
    await until(lambda: events.inbox, "inbound after the brown-out")
    assert any("restarted" in d for d in events.errors(mark)), events.statuses[mark:]


async def test_modem_reset_while_not_registered_is_noticed(rig: Rig) -> None:
    """A reset is a reset whatever the status: the settings are gone either way."""
    sim = await rig.sim(faults=Faults(registration=2))
    gw, events = await rig.gateway(sim)
    await in_error(gw, events)
    assert reinitialised(sim)

    sim.brown_out()
    await asyncio.sleep(1.0)  # the reset is over
    sim.update_faults(registration=None)

    await until(lambda: reinitialised(sim), "the driver re-initialising the modem")
    await online(gw)
    await send_ok(gw, "msg_reset", "after the reset")
    assert (await delivered(events, "msg_reset")).delivered


async def test_modem_reboot_while_online(rig: Rig) -> None:
    """A clean restart (RDY … SMS Ready with no voltage warning first) is noticed."""
    sim = await rig.sim()
    gw, events = await rig.online_gateway(sim)
    mark = len(events.statuses)

    sim.modem.power_cycle(time.time())
    sim.poke()

    assert "restarted" in await in_error(gw, events, mark)
    await until(lambda: reinitialised(sim), "the driver re-initialising the modem")
    await online(gw)
    await send_ok(gw, "msg_reboot", "after the reboot")
    assert (await delivered(events, "msg_reboot")).delivered


async def test_brown_out_during_send(rig: Rig) -> None:
    """The 2 A burst of a send drops the supply: the message in hand goes back to the
    queue as soon as the reset shows, not after the send timeout."""
    sim = await rig.sim()
    gw, events = await rig.online_gateway(sim, send_timeout=60.0)
    mark = len(events.statuses)
    sim.update_faults(brown_out_on_send=True)

    outcome = await asyncio.wait_for(gw.send(sms("msg_burst", "the burst")), WAIT)

    assert not outcome.ok
    assert outcome.kind is ErrorKind.TRANSIENT
    assert sim.modem.sent == []
    await in_error(gw, events, mark)
    sim.update_faults(brown_out_on_send=False)  # a better power supply
    await until(lambda: reinitialised(sim), "the driver re-initialising the modem")
    await online(gw)
    await send_ok(gw, "msg_burst", "the burst")
    assert (await delivered(events, "msg_burst")).delivered


async def send_eventually(gw: ModemGateway, message_id: str, body: str) -> SendOutcome:
    """Send as the dispatcher would: while the gateway recovers, try again."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        await online(gw)
        outcome = await gw.send(sms(message_id, body))
        if outcome.ok:
            return outcome
        if loop.time() > deadline:
            pytest.fail(f"{message_id} never went out: {outcome.error}")
        await asyncio.sleep(0.2)


async def test_send_cancelled_by_the_caller(rig: Rig) -> None:
    """The dispatcher bounds every send with its acknowledgement timeout (asyncio.wait_for,
    30 s by default) while AT+CMGS may take 60 s: a send cancelled mid-command must leave
    the driver working."""
    sim = await rig.sim(timings=Timings(send=2.0))  # PDU handed over -> +CMGS: 2 s
    gw, events = await rig.online_gateway(sim, poll_interval=0.2)  # polls while it waits

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(gw.send(sms("msg_cancelled", "slow network")), 0.5)
    await asyncio.sleep(3.0)  # the late +CMGS comes and goes

    await send_eventually(gw, "msg_after_cancel", "the next one")
    assert (await delivered(events, "msg_after_cancel")).delivered
    # The watchdog still runs: it polls the new signal and notices a dead modem.
    sim.update_faults(signal=25)
    await until(lambda: gw.health.signal_dbm == -113 + 2 * 25, "a poll seeing the new signal")
    sim.update_faults(dead=True)
    assert "did not answer" in await in_error(gw, events)
    await gw.stop()


async def test_send_cancelled_then_the_next_send_at_once(rig: Rig) -> None:
    """After the dispatcher gave up on a slow send it sends the next message at once: the
    first message's late +CMGS must not be taken for the second's, and a send reported
    ok must really have reached the network."""
    sim = await rig.sim(timings=Timings(send=2.0))  # PDU handed over -> +CMGS: 2 s
    gw, events = await rig.online_gateway(sim, poll_interval=3600, send_timeout=5.0)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(gw.send(sms("msg_slow", "slow network")), 0.5)
    outcome = await gw.send(sms("msg_next", "right after"))

    if outcome.ok:  # refusing it is fine (it goes back to the queue); lying is not
        await until(
            lambda: "right after" in [s.text for s in sim.modem.sent],
            f"msg_next (accepted as {outcome.gateway_ref}) on the network",
        )
    await send_eventually(gw, "msg_later", "later")
    assert (await delivered(events, "msg_later")).delivered
    assert [s.text for s in sim.modem.sent].count("later") == 1


async def test_dead_modem_mid_session(rig: Rig) -> None:
    sim = await rig.sim()
    gw, events = await rig.online_gateway(sim)
    mark = len(events.statuses)

    sim.update_faults(dead=True)

    detail = await in_error(gw, events, mark)
    assert "did not answer" in detail
    outcome = await gw.send(sms("msg_dead", "nobody home"))
    assert not outcome.ok
    assert outcome.kind is ErrorKind.GATEWAY

    sim.update_faults(dead=False)
    await online(gw)
    await send_ok(gw, "msg_dead", "alive again")
    assert (await delivered(events, "msg_dead")).delivered


async def test_dead_modem_from_the_start(rig: Rig) -> None:
    sim = await rig.sim(faults=Faults(dead=True))
    gw, events = await rig.gateway(sim, boot_wait=2)

    detail = await in_error(gw, events)
    assert "no answer" in detail
    assert "TX" in detail  # what to check

    sim.update_faults(dead=False)
    await online(gw)
    await send_ok(gw, "msg_dead_start", "finally")


async def test_hang_mid_command(rig: Rig) -> None:
    sim = await rig.sim()
    # No polls: the hang is sure to hit the AT+CMGS.
    gw, events = await rig.online_gateway(sim, send_timeout=2.0, poll_interval=3600)
    mark = len(events.statuses)

    sim.update_faults(hang=True)  # the next command is echoed (if at all), then silence
    outcome = await gw.send(sms("msg_hang", "stuck"))

    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error.code == "modem_timeout"
    assert outcome.kind is ErrorKind.TRANSIENT  # back to the queue
    assert sim.modem.sent == []
    await in_error(gw, events, mark)

    sim.update_faults(hang=False)
    await online(gw)
    await send_ok(gw, "msg_hang", "unstuck")
    assert (await delivered(events, "msg_hang")).delivered
    assert len(sim.modem.sent) == 1


NOISE = b"\x00\xfe\x13~#\xa7noise"  # what a wrong baud rate or a loose wire looks like


async def through_the_noise(sim: PtyModem, gw: ModemGateway, events: Events) -> None:
    """Send short and long, get the reports, receive single and multipart: all still work."""
    first = len(sim.modem.sent)
    await send_ok(gw, "msg_noise_short", "through the noise")
    await send_ok(gw, "msg_noise_long", "ü" + "z" * 150)  # UCS-2, three parts
    got = network_got(sim, first)
    assert got[0].text == "through the noise"
    assert joined(got[1:]) == "ü" + "z" * 150
    assert (await delivered(events, "msg_noise_short")).delivered
    assert (await delivered(events, "msg_noise_long")).delivered

    sim.inject_sms(SENDER, "inbound through the noise")
    sim.inject_sms(SENDER, "q" * 200, order=[1, 0])
    await until(lambda: len(events.inbox) >= 2, "two messages in the inbox")
    assert sorted((i.body, i.incomplete) for i in events.inbox) == [
        ("inbound through the noise", False),
        ("q" * 200, False),
    ]
    await until(lambda: sim.modem.state.memories["SM"].used == 0, "the SIM slots freed")
    assert gw.online


async def test_interleaved_urcs(rig: Rig) -> None:
    # Between the echo and every answer: a ring, a USSD answer, codes nobody knows.
    urcs = ("RING", '+CUSD: 0,"Guthaben 4,20 EUR",15', "+QIND: 7", "^RSSI:14")
    sim = await rig.sim(faults=Faults(extra_urcs=urcs))
    gw, events = await rig.online_gateway(sim)
    assert gw.health.model == "SIMCOM_SIM800L"
    await through_the_noise(sim, gw, events)


async def test_line_noise_mid_session(rig: Rig) -> None:
    sim = await rig.sim()
    gw, events = await rig.online_gateway(sim)

    # From now on: garbage bytes and an unknown plain-text URC before every answer.
    sim.update_faults(garbage=NOISE, extra_urcs=("RING", "UNKNOWN THING", "+QIND: 7"))

    await asyncio.sleep(1.0)  # a few polls through the noise
    assert gw.online
    await through_the_noise(sim, gw, events)


@pytest.mark.parametrize(
    "faults",
    [Faults(garbage=NOISE), Faults(extra_urcs=("UNKNOWN THING",))],
    ids=["garbage", "unknown-urc"],
)
async def test_line_noise_from_power_on(rig: Rig, faults: Faults) -> None:
    """Noise before the answer to AT+CPIN? (and every other command) during the
    initialisation: the +CPIN line is still found, the SIM is not taken for missing."""
    sim = await rig.sim(faults=faults)
    gw, events = await rig.online_gateway(sim)
    assert gw.health.registered
    assert "SIMCOM_SIM800L" in gw.health.model
    await through_the_noise(sim, gw, events)


async def test_garbage_while_reading_stored_messages(rig: Rig) -> None:
    """Line noise must not cost the messages waiting on the SIM: a noise line among the
    AT+CMGL answer lines must not shift the header/PDU pairs."""
    sim = await rig.sim()
    sim.inject_sms(SENDER, "waiting on the SIM")
    sim.update_faults(garbage=NOISE)

    _gw, events = await rig.online_gateway(sim)

    await until(lambda: events.inbox, "the stored message in the inbox")
    assert [(i.sender, i.body, i.incomplete) for i in events.inbox] == [
        (SENDER, "waiting on the SIM", False)
    ]
    assert sim.modem.state.memories["SM"].used == 0


async def test_unplug_and_replug(rig: Rig) -> None:
    sim = await rig.sim()
    gw, events = await rig.online_gateway(sim)
    mark = len(events.statuses)

    sim.unplug()  # the link vanishes, the pty closes

    detail = await in_error(gw, events, mark)
    assert not Path(sim.path).exists()
    await until(
        lambda: any("does not exist" in d for d in events.errors(mark)),
        "the gateway saying the port is gone",
    )
    outcome = await gw.send(sms("msg_unplugged", "nowhere to go"))
    assert (outcome.ok, outcome.kind) == (False, ErrorKind.GATEWAY), detail

    sim.replug()  # a fresh pty behind the same link; the modem boots again

    await online(gw)
    await send_ok(gw, "msg_replugged", "back again")
    assert (await delivered(events, "msg_replugged")).delivered


async def test_unplug_is_noticed_from_the_port_not_from_a_poll(rig: Rig) -> None:
    """The port closing is news at once (a read error, not only EOF); the driver need not
    wait for a poll to time out."""
    sim = await rig.sim()
    gw, events = await rig.online_gateway(sim, poll_interval=3600)
    mark = len(events.statuses)

    sim.unplug()

    await in_error(gw, events, mark)


async def test_busy_port(rig: Rig) -> None:
    """Another program holds the port (exclusively, as ModemManager or a stale script
    would): a clear error, then the gateway takes the port once it is free."""
    sim = await rig.sim()
    other = serial.Serial(sim.path, 115200, exclusive=True)
    try:
        gw, events = await rig.gateway(sim)
        detail = await in_error(gw, events)
        assert "cannot open" in detail
        assert "in use by another program" in detail
    finally:
        other.close()
    await online(gw)
    await send_ok(gw, "msg_busy", "the port is ours")


async def test_smsc_and_no_status_reports(rig: Rig) -> None:
    sim = await rig.sim()
    gw, events = await rig.online_gateway(sim, smsc="+491770610000", status_reports=False)

    assert sim.modem.state.smsc == "+491770610000"  # AT+CSCA
    await send_ok(gw, "msg_noreport", "no report wanted")
    (submit,) = network_got(sim)
    assert not submit.status_report_request
    await asyncio.sleep(1.5)  # a report would come 0.5 s after the send
    assert events.reports == []


async def test_probe(rig: Rig) -> None:
    sim = await rig.sim()
    gw = ModemGateway("probe", ModemConfig(port=sim.path))
    try:
        health = await asyncio.wait_for(gw.probe(), WAIT)
    finally:
        await gw.stop()
    assert health.model == "SIMCOM_SIM800L"
    assert health.imei == "866262037741234"
    assert health.registered
    assert health.operator == "Telekom.de"
    assert health.signal_dbm == -77
    assert health.signal_bars == 3


async def test_probe_of_something_that_is_not_a_modem(rig: Rig) -> None:
    sim = await rig.sim(faults=Faults(dead=True))
    gw = ModemGateway("probe", ModemConfig(port=sim.path, boot_wait=2))
    try:
        with pytest.raises(ModemProblem, match="no answer"):
            await asyncio.wait_for(gw.probe(), WAIT)
        with pytest.raises(ModemProblem, match="does not exist"):
            await ModemGateway("nothing", ModemConfig(port=str(rig.directory / "nope"))).probe()
    finally:
        await gw.stop()


async def test_two_modems_one_hung(rig: Rig) -> None:
    sim_a = await rig.sim("modem_a")
    sim_b = await rig.sim("modem_b")
    gw_a, events_a = await rig.online_gateway(sim_a, "hung", send_timeout=30.0, poll_interval=3600)
    gw_b, events_b = await rig.online_gateway(sim_b, "fine")

    sim_a.update_faults(hang=True)
    stuck = asyncio.create_task(gw_a.send(sms("msg_a", "never leaves")))
    await asyncio.sleep(0.2)  # let it get to its AT+CMGS

    for i in range(5):
        await send_ok(gw_b, f"msg_b{i}", f"message {i} through the healthy modem")
    for i in range(5):
        assert (await delivered(events_b, f"msg_b{i}")).delivered
    sim_b.inject_sms(SENDER, "inbound on the healthy modem")
    await until(lambda: events_b.inbox, "inbound on the healthy modem")

    assert not stuck.done()  # the hung modem is still stuck, and bothered nobody
    assert gw_b.online
    assert [s.text for s in sim_b.modem.sent] == [
        f"message {i} through the healthy modem" for i in range(5)
    ]
    assert sim_a.modem.sent == []

    await gw_a.stop()  # the message in hand goes back to the queue
    outcome = await asyncio.wait_for(stuck, WAIT)
    assert not outcome.ok
    assert events_a.reports == []


async def test_reports_that_come_before_the_last_part_is_sent(rig: Rig) -> None:
    """On a real network a part's report can arrive while later parts are still going out."""
    sim = await rig.sim(timings=Timings(send=0.15, report=0.05))
    gw, events = await rig.online_gateway(sim)
    body = " ".join(f"word{i}" for i in range(90))  # 4 GSM-7 parts
    await send_ok(gw, "msg_early", body)
    report = await delivered(events, "msg_early")
    assert report.delivered
    assert len(events.reports_for("msg_early")) == 1


async def test_reports_are_matched_by_reference_and_recipient(rig: Rig) -> None:
    """Message references wrap at 256: a report must not land on another message that
    happens to share its reference."""
    sim = await rig.sim(timings=Timings(report=0.3))
    gw, events = await rig.online_gateway(sim)
    await send_ok(gw, "msg_a", "to the first")
    other = await gw.send(sms("msg_b", "to the second", to="+4915187654321"))
    assert other.ok
    assert (await delivered(events, "msg_a")).delivered
    assert (await delivered(events, "msg_b")).delivered


async def test_stop_ends_a_supervisor_that_swallowed_a_cancellation(tmp_path: Path) -> None:
    # Python 3.11's wait_for can drop a cancellation; stop must not hang on that.
    gw = ModemGateway("m1", ModemConfig(port=str(tmp_path / "nothing")))
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed > 1:
                    raise

    gw._supervisor = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(gw.stop(), WAIT)
    assert swallowed == 2
    assert gw._supervisor.done()
    assert gw.status.value == "offline"
