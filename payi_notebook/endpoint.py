"""Where events go: Pay-i (a key), a custom base URL, or our local sandbox (no key).

``resolve`` makes that choice from the settings once per start. Without a key it starts the
sandbox in a child process (``sandbox.process``) and makes calls to its provider emulator
recognisable; with a key and ``PAYI_SANDBOX_PROVIDER_URL`` (a sandbox started elsewhere, as
the tests and Binder do) it does the latter only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from .config import PAYI_DEFAULT_BASE_URL, Settings
from .files import private_dir
from .secret import Secret


@dataclass(frozen=True)
class Endpoint:
    """Where events go. ``kind`` is "Pay-i", "sandbox" (ours, in-process or CLI) or "custom"."""

    kind: str
    base_url: str
    api_key: Secret
    key: str  # identity of the endpoint for the spool (never the API key)

    def __repr__(self) -> str:
        return f"Endpoint(kind={self.kind!r}, base_url={self.base_url!r})"


@dataclass(frozen=True)
class Resolved:
    """What ``resolve`` found: the endpoint, the sandbox it started (or None), what to say at load."""

    endpoint: Endpoint
    sandbox: Any
    announcement: str | None


def data_dir() -> Path:
    """Where the spool and the embedded sandbox's database live (``PAYI_NOTEBOOK_DATA_DIR``)."""
    configured = os.environ.get("PAYI_NOTEBOOK_DATA_DIR", "").strip()
    return Path(configured) if configured else Path(platformdirs.user_data_dir("payi_notebook"))


def needs_sandbox(settings: Settings) -> bool:
    """No key: calls go to the local sandbox, which ``resolve`` starts."""
    return not settings.api_key


def resolve(settings: Settings) -> Resolved:
    """The endpoint the settings name; without a key, a freshly started local sandbox."""
    if settings.api_key:
        provider_url = os.environ.get("PAYI_SANDBOX_PROVIDER_URL", "").strip()
        if provider_url:
            add_provider_bases(settings, provider_url)
            kind = "sandbox"
        else:
            kind = "Pay-i" if settings.base_url.rstrip("/") == PAYI_DEFAULT_BASE_URL else "custom"
        return Resolved(Endpoint(kind, settings.base_url, settings.api_key, settings.base_url), None, None)
    from .sandbox.process import spawn

    db = data_dir() / "sandbox.db"
    private_dir(db.parent)
    sandbox = spawn(db=db, log_path=data_dir() / "sandbox.log")
    add_provider_bases(settings, sandbox.provider_url)
    announcement = (
        f"payi_notebook: no PAYI_API_KEY, so calls go to the local Pay-i sandbox at {sandbox.base_url} "
        f"(nothing is sent to Pay-i; provider emulator at {sandbox.provider_url})."
    )
    return Resolved(Endpoint("sandbox", sandbox.base_url, Secret(sandbox.api_key), f"sandbox:{db}"), sandbox, announcement)


def add_provider_bases(settings: Settings, provider_url: str) -> None:
    """Make calls to the emulator recognisable, like calls to the real provider hosts."""
    from .sandbox.emulator import sdk_base_urls

    providers = {k: list(v) for k, v in settings.providers.items()}
    for provider, base in sdk_base_urls(provider_url):
        if base not in providers.setdefault(provider, []):
            providers[provider].append(base)
    settings.providers = providers
