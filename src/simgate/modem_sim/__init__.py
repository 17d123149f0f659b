"""A SIM800L-like GSM modem for tests and demos.

``SimModem`` is the pure model (bytes in, bytes out, time passed in); ``PtyModem`` puts one
on a real pseudo-terminal with a JSON control socket (protocol in ``pty.py``); ``serve``
runs one until cancelled, for ``simgate modem simulate``.
"""

from __future__ import annotations

from simgate.modem_sim.config import Faults, ModemConfig, Timings
from simgate.modem_sim.control import ControlError, request
from simgate.modem_sim.model import SimModem
from simgate.modem_sim.pty import PtyModem, serve
from simgate.modem_sim.sms import Submitted

__all__ = [
    "ControlError",
    "Faults",
    "ModemConfig",
    "PtyModem",
    "SimModem",
    "Submitted",
    "Timings",
    "request",
    "serve",
]
