"""A reference phone gateway speaking seed 003's protocol, shipped for demos, tests and the
benchmark (the phone's sibling of ``modem_sim``)."""

from __future__ import annotations

from simgate.phone_sim.emulator import EmulatorConfig, PhoneEmulator, Refused, serve_control

__all__ = ["EmulatorConfig", "PhoneEmulator", "Refused", "serve_control"]
