"""What the modem driver needs from the PDU codec, in the driver's terms: parts to send,
delivery reports, and received messages ready for the store (a PDU the codec cannot read
is stored raw rather than dropped)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from simgate.domain.messages import MessageError, Received
from simgate.protocols.pdu import (
    Deliver,
    EncodedPdu,
    Message,
    PduError,
    Reassembler,
    StatusReport,
    decode,
    encode_submit,
)

VALIDITY = timedelta(days=1)  # the network gives up on an undeliverable SMS after a day


@dataclass(frozen=True, slots=True)
class Report:
    reference: int
    recipient: str
    final: bool
    delivered: bool
    error: MessageError | None


def new_reassembler(timeout_seconds: float) -> Reassembler:
    return Reassembler(timeout=timedelta(seconds=timeout_seconds))


def submit_parts(to: str, body: str, *, report: bool, reference: int) -> list[EncodedPdu]:
    return encode_submit(
        to, body, request_status_report=report, validity=VALIDITY, reference=reference % 256
    )


def _decode_either(pdu: str) -> Deliver | StatusReport | None:
    # Modems differ in whether +CDS carries the service-centre address: try both.
    for has_smsc in (True, False):
        try:
            decoded = decode(pdu, has_smsc=has_smsc)
        except PduError:
            continue
        if isinstance(decoded, Deliver | StatusReport):
            return decoded
    return None


def status_report(pdu: str) -> Report | None:
    decoded = _decode_either(pdu)
    if not isinstance(decoded, StatusReport):
        return None
    error = None
    if decoded.failed:
        error = MessageError(
            "undelivered",
            f"the network could not deliver it: {decoded.meaning}",
            "the phone may be off, out of coverage or unable to take SMS; check the number",
        )
    return Report(
        decoded.message_reference,
        str(decoded.recipient),
        not decoded.pending,
        decoded.delivered,
        error,
    )


def _received(message: Message, gateway: str, *, incomplete: bool) -> Received:
    return Received(
        gateway=gateway,
        sender=str(message.originator),
        body=message.text,
        received_at=message.timestamp.astimezone(UTC),
        parts=message.total,
        incomplete=incomplete,
    )


def deliver(reassembler: Reassembler, pdu: str, gateway: str, *, now: datetime) -> list[Received]:
    """The messages this PDU completes (none while parts are still missing)."""
    try:
        decoded = decode(pdu, has_smsc=True)
    except PduError as exc:
        return [
            Received(
                gateway=gateway,
                sender="",
                body="",
                received_at=now,
                parts=1,
                incomplete=True,
                extra={"raw_pdu": pdu[:1000], "error": str(exc)},
            )
        ]
    if not isinstance(decoded, Deliver):
        return []
    whole = reassembler.add(decoded, now)
    return [_received(whole, gateway, incomplete=False)] if whole is not None else []


def expired(reassembler: Reassembler, gateway: str, *, now: datetime) -> list[Received]:
    """Messages whose missing parts never came: delivered with a marker, flagged."""
    return [_received(m, gateway, incomplete=True) for m in reassembler.expire(now)]
