"""SMS PDU codec (3GPP TS 23.040, 23.038; 27.005 PDU mode), pure: hex in, values out.

``encode_submit`` gives what AT+CMGS takes; ``decode`` reads what +CMT, +CDS, AT+CMGR and
AT+CMGL show; ``Reassembler`` joins concatenated parts. Errors are ``PduError``.
"""

from __future__ import annotations

from simgate.protocols.pdu.encode import (
    EncodedPdu,
    SubmitPdu,
    encode_deliver,
    encode_status_report,
    encode_submit,
    split_text,
)
from simgate.protocols.pdu.fields import Address, Alphabet, DataCoding, TypeOfNumber
from simgate.protocols.pdu.primitives import PduError
from simgate.protocols.pdu.reassembly import DEFAULT_TIMEOUT, Message, Reassembler, join_text
from simgate.protocols.pdu.tpdu import (
    Deliver,
    DeliveryState,
    StatusReport,
    Submit,
    decode,
    delivery_state,
)
from simgate.protocols.pdu.userdata import Concat, InformationElement

__all__ = [
    "DEFAULT_TIMEOUT",
    "Address",
    "Alphabet",
    "Concat",
    "DataCoding",
    "Deliver",
    "DeliveryState",
    "EncodedPdu",
    "InformationElement",
    "Message",
    "PduError",
    "Reassembler",
    "StatusReport",
    "Submit",
    "SubmitPdu",
    "TypeOfNumber",
    "decode",
    "delivery_state",
    "encode_deliver",
    "encode_status_report",
    "encode_submit",
    "join_text",
    "split_text",
]
