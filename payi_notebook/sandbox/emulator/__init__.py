"""A local stand-in for the OpenAI and Anthropic APIs, for the official SDKs to run offline.

``create_app()`` returns a Starlette app serving ``/v1/chat/completions``, ``/v1/responses``,
``/v1/embeddings`` and ``/v1/messages`` with deterministic replies, plausible usage (cached
and reasoning tokens included) and faults injected per request. See README.md.
"""

from .app import create_app
from .faults import FAULT_HEADER
from .request_log import RequestLog, RequestRecord
from .text import count_tokens, tokenize

__all__ = ["FAULT_HEADER", "RequestLog", "RequestRecord", "count_tokens", "create_app", "tokenize"]
