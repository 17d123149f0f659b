"""What a modem's +CME ERROR / +CMS ERROR means, what to do about it, and how to retry.

Codes from 3GPP TS 27.007 (9.2, mobile equipment errors) and TS 27.005 (3.2.5, message
service failures, which include the network's cause values of TS 24.011 and the TP-FCS
values of TS 23.040), plus what SIMCom and Huawei modems send in practice. The hints are
written for someone at a Raspberry Pi with a SIM800L or a USB stick.
"""

from __future__ import annotations

from dataclasses import dataclass

from simgate.domain.retry import ErrorKind

T, P, G = ErrorKind.TRANSIENT, ErrorKind.PERMANENT, ErrorKind.GATEWAY

_SIM_SEATED = "Reseat the SIM card (power off first), check it is the right size and not damaged."
_PIN = (
    "The SIM is locked with a PIN: give it with 'simgate modem add … --pin', or remove "
    "the PIN in a phone."
)
_PUK = (
    "The SIM is blocked after wrong PINs: unblock it with its PUK in a phone. simgate never "
    "retries a wrong PIN, so it cannot block a SIM itself."
)
_POWER = (
    "Check the antenna and signal, and the power supply: a SIM800L needs 3.7-4.2 V that "
    "can deliver 2 A bursts (a big capacitor near the module helps); USB ports often "
    "cannot."
)
_NUMBER = "Check the recipient's number (country code, no spaces or leading zeros after it)."
_CREDIT = "Check the SIM's credit or SMS plan with the operator."
_SMSC = (
    "The SIM has no SMS centre number: set it with 'simgate modem add … --smsc +<number>' "
    "(the operator publishes it)."
)
_LATER = "The network is busy or had a hiccup; simgate retries by itself."


@dataclass(frozen=True, slots=True)
class ModemError:
    kind: str  # "CME" or "CMS"
    code: int
    meaning: str
    hint: str
    retry: ErrorKind

    @property
    def error_code(self) -> str:
        """Stable code for the API's error.code, e.g. ``cms_330``."""
        return f"{self.kind.lower()}_{self.code}"


_CME: dict[int, tuple[str, str, ErrorKind]] = {
    0: ("phone failure", "Restart the modem; if it persists, " + _POWER, G),
    1: ("no connection to phone", "Check the serial wiring and baud rate.", G),
    3: ("operation not allowed", "The modem refused the command in its current state.", G),
    4: ("operation not supported", "This modem does not support that command.", G),
    5: ("PH-SIM PIN required", "The modem is locked to another SIM; unlock it.", G),
    10: ("SIM not inserted", _SIM_SEATED + " " + _PIN, G),
    11: ("SIM PIN required", _PIN, G),
    12: ("SIM PUK required", _PUK, G),
    13: ("SIM failure", _SIM_SEATED, G),
    14: ("SIM busy", "The SIM is still starting up; simgate waits and retries.", T),
    15: ("SIM wrong", "The SIM is not accepted by this modem (locked device?).", G),
    16: (
        "incorrect password",
        "The PIN is wrong. simgate stopped trying so the SIM does not block; correct the PIN.",
        G,
    ),
    17: ("SIM PIN2 required", _PIN, G),
    18: ("SIM PUK2 required", _PUK, G),
    20: ("memory full", "The SIM's message memory is full; simgate deletes what it has read.", T),
    21: ("invalid index", "A message slot that does not exist was addressed.", T),
    22: ("not found", "The requested entry does not exist.", T),
    23: ("memory failure", "The SIM's memory failed; try another SIM.", G),
    24: ("text string too long", "The text is longer than the modem accepts.", P),
    25: ("invalid characters in text string", "The text has characters the modem rejects.", P),
    26: ("dial string too long", _NUMBER, P),
    27: ("invalid characters in dial string", _NUMBER, P),
    30: ("no network service", _POWER, G),
    31: ("network timeout", _LATER, T),
    32: (
        "network not allowed - emergency calls only",
        "The SIM is not registered: check that "
        "it is active and that the operator covers this place. " + _POWER,
        G,
    ),
    40: ("network personalisation PIN required", "The modem is locked to an operator.", G),
    41: ("network personalisation PUK required", "The modem is locked to an operator.", G),
    100: ("unknown error", "Restart the modem if it repeats.", T),
    103: ("illegal MS", "The network rejected this SIM; ask the operator.", G),
    106: ("illegal ME", "The network rejected this device (IMEI); ask the operator.", G),
    107: ("GPRS services not allowed", "Data is not enabled for this SIM.", G),
    111: ("PLMN not allowed", "This network does not accept the SIM (roaming?).", G),
    112: ("location area not allowed", "The SIM may not be used here.", G),
    113: ("roaming not allowed in this location area", "Enable roaming or use a local SIM.", G),
    148: ("unspecified GPRS error", _LATER, T),
    257: ("network rejected request", _LATER, T),
    258: ("retry operation", _LATER, T),
    261: ("unknown subscriber", _NUMBER, P),
    262: ("service not available", _CREDIT, G),
}

_CMS: dict[int, tuple[str, str, ErrorKind]] = {
    1: ("unassigned (unallocated) number", _NUMBER, P),
    8: ("operator determined barring", "The operator blocks SMS for this SIM. " + _CREDIT, G),
    10: ("call barred", "Outgoing SMS are barred on this SIM. " + _CREDIT, G),
    21: ("short message transfer rejected", "The recipient's network refused it. " + _NUMBER, P),
    27: (
        "destination out of service",
        "The recipient's phone is unreachable; it may work later.",
        T,
    ),
    28: ("unidentified subscriber", _NUMBER, P),
    29: ("facility rejected", _CREDIT, G),
    30: ("unknown subscriber", _NUMBER, P),
    38: ("network out of order", _LATER, T),
    41: ("temporary failure", _LATER, T),
    42: ("congestion", _LATER, T),
    47: ("resources unavailable", _LATER, T),
    50: ("requested facility not subscribed", _CREDIT, G),
    69: ("requested facility not implemented", "The network does not offer this service.", G),
    81: ("invalid short message transfer reference", _LATER, T),
    95: ("invalid message", "The network rejected the message as malformed.", P),
    96: ("invalid mandatory information", "The network rejected the message as malformed.", P),
    97: ("message type non-existent", "The network rejected the message as malformed.", P),
    98: ("message not compatible with protocol state", _LATER, T),
    99: ("information element non-existent", "The network rejected the message.", P),
    111: ("protocol error", _LATER, T),
    127: ("interworking error", _LATER, T),
    128: (
        "telematic interworking not supported",
        "The recipient cannot receive this kind of message.",
        P,
    ),
    129: (
        "short message type 0 not supported",
        "The recipient cannot receive this kind of message.",
        P,
    ),
    130: ("cannot replace short message", "", P),
    143: ("unspecified protocol identifier error", "", P),
    144: (
        "data coding scheme not supported",
        "The recipient's network cannot take this encoding.",
        P,
    ),
    145: ("message class not supported", "", P),
    159: ("unspecified data coding scheme error", "", P),
    160: ("command cannot be actioned", "", P),
    161: ("command unsupported", "", P),
    176: ("TPDU not supported", "", P),
    192: ("SMS centre busy", _LATER, T),
    193: ("no SMS centre subscription", _SMSC + " " + _CREDIT, G),
    194: ("SMS centre system failure", _LATER, T),
    195: ("invalid SME address", _NUMBER, P),
    196: ("destination barred", "The recipient does not accept SMS from this number.", P),
    197: ("rejected as duplicate", "The network saw this message already; it was sent.", P),
    198: ("validity period format not supported", "", P),
    199: ("validity period not supported", "", P),
    208: (
        "SIM SMS storage full",
        "The SIM's message memory is full; simgate deletes what it has read.",
        T,
    ),
    209: ("no SMS storage capability in SIM", "", G),
    210: ("error in MS", "Restart the modem if it repeats.", T),
    211: ("memory capacity exceeded", "The modem's memory is full.", T),
    255: ("unspecified error", _LATER, T),
    300: ("ME failure", "The modem failed to send. " + _POWER, T),
    301: ("SMS service of ME reserved", "", T),
    302: ("operation not allowed", "The modem refused the command now (still starting?).", T),
    303: ("operation not supported", "", G),
    304: ("invalid PDU mode parameter", "simgate sent a PDU the modem did not accept.", P),
    305: ("invalid text mode parameter", "", P),
    310: ("SIM not inserted", _SIM_SEATED, G),
    311: ("SIM PIN required", _PIN, G),
    312: ("PH-SIM PIN required", "The modem is locked to another SIM.", G),
    313: ("SIM failure", _SIM_SEATED, G),
    314: ("SIM busy", "The SIM is still starting up; simgate retries.", T),
    315: ("SIM wrong", "The SIM is not accepted by this modem.", G),
    316: ("SIM PUK required", _PUK, G),
    317: ("SIM PIN2 required", _PIN, G),
    318: ("SIM PUK2 required", _PUK, G),
    320: ("memory failure", "", T),
    321: ("invalid memory index", "", T),
    322: ("memory full", "The SIM's message memory is full; simgate deletes what it has read.", T),
    330: ("SMS centre address unknown", _SMSC, G),
    331: ("no network service", _POWER, G),
    332: ("network timeout", _LATER, T),
    340: ("no +CNMA acknowledgement expected", "", T),
    500: (
        "unknown error",
        "Often a message failed: " + _NUMBER + " " + _CREDIT + " Check the UART wiring too.",
        T,
    ),
}

# Verbose texts (AT+CMEE=2) seen from SIMCom and Huawei modems, lower-cased -> code.
_CME_TEXT = {meaning.lower(): code for code, (meaning, _, _) in _CME.items()}
_CMS_TEXT = {meaning.lower(): code for code, (meaning, _, _) in _CMS.items()}
_CME_TEXT.update({"sim not ready": 14, "no network service": 30, "incorrect password": 16})
_CMS_TEXT.update(
    {
        "unknown error": 500,
        "sim not inserted": 310,
        "sms service not ready": 302,
        "invalid memory index": 321,
        "network timeout": 332,
    }
)


def lookup(kind: str, code: int | None = None, text: str = "") -> ModemError:
    """Explain a +CME/+CMS ERROR given as a number or (verbose mode) as text."""
    kind = kind.upper()
    table, texts = (_CME, _CME_TEXT) if kind == "CME" else (_CMS, _CMS_TEXT)
    if code is None and text:
        code = texts.get(text.strip().lower())
    if code is not None and code in table:
        meaning, hint, retry = table[code]
        return ModemError(kind, code, meaning, hint or "See the modem's AT manual.", retry)
    return _fallback(kind, code, text)


def _fallback(kind: str, code: int | None, text: str) -> ModemError:
    meaning = text or (f"error {code}" if code is not None else "unknown error")
    if kind == "CMS" and code is not None and code >= 512:
        hint = (
            "A manufacturer-specific error; see the modem's AT manual. Restart the modem if "
            "it repeats."
        )
    elif kind == "CMS" and code is not None and 1 <= code <= 127:
        hint = "The network refused the message; simgate retries."
    else:
        hint = "Restart the modem if it repeats; see its AT manual."
    return ModemError(kind, code if code is not None else -1, meaning, hint, ErrorKind.TRANSIENT)
