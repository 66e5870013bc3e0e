"""Random identifiers shaped like each provider's (``chatcmpl-…``, ``resp_…``, ``msg_01…``)."""

from __future__ import annotations

import os

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62(length: int) -> str:
    number = int.from_bytes(os.urandom(length), "big")
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 62)
        chars.append(_BASE62[digit])
    return "".join(chars)


def hex_id(prefix: str, length: int = 48) -> str:
    return prefix + os.urandom(length // 2).hex()


def chat_completion_id() -> str:
    return "chatcmpl-" + base62(29)


def openai_request_id() -> str:
    return hex_id("req_", 32)


def anthropic_message_id() -> str:
    return "msg_01" + base62(22)


def anthropic_request_id() -> str:
    return "req_011C" + base62(20)
