"""The shipped fake gateway: its memory stays bounded however long a demo runs."""

from __future__ import annotations

import pytest

from simgate.drivers import fake
from simgate.drivers.base import OutboundSms
from simgate.drivers.fake import FakeConfig, FakeGateway, FakeMode


def sms(n: int) -> OutboundSms:
    return OutboundSms(f"m{n}", "+4915112345678", f"text {n}", "gsm7", 1, 0, 1)


async def test_it_remembers_the_latest_messages_and_still_drops_their_duplicates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fake, "REMEMBER", 4)
    gateway = FakeGateway("g", FakeConfig(mode=FakeMode.SENT))
    refs = [(await gateway.send(sms(n))).gateway_ref for n in range(20)]
    assert len(set(refs)) == 20
    assert 4 <= len(gateway.sent) < 8
    assert gateway.sent[-1].message_id == "m19"
    again = await gateway.send(sms(19))  # a retry of a recent one: not sent twice
    assert again.gateway_ref == refs[19]
    assert gateway.duplicates_dropped == 1
    assert len(gateway._by_message) < 8
