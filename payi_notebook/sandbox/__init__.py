"""A local Pay-i-compatible service plus a provider emulator, for working offline.

``start()`` serves both on loopback from a background thread and returns a ``Sandbox``
handle; ``python -m payi_notebook.sandbox`` does the same from a shell. Point Pay-i clients
at ``sandbox.base_url`` with ``sandbox.api_key``, and provider SDKs at ``sandbox.provider_url``
(OpenAI: ``f"{provider_url}/v1"``; Anthropic: ``provider_url``) or at the proxy routes.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .embedded import Sandbox, start

__all__ = ["Sandbox", "start"]


def __getattr__(name: str) -> Any:
    """``Sandbox`` and ``start`` load on first use, so the notebook side can use ``sandbox.process``
    (spawn the sandbox as a child) and the emulator's URL table without the service's imports."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(".embedded", __name__), name)
    globals()[name] = value
    return value
