"""Settings: environment first, then ``pn.configure(...)`` / ``%config PayiMagics.<option>``.

Traitlets validates every assignment, so a bad value is refused with a message before
anything uses it. Each setting has this one owner: the session, the sender and capture read
it from here when they need it, and keep no copy that could go stale. The API key is a
``Secret``: no repr, ``vars()`` or pickle shows it.
"""

from __future__ import annotations

import copy
import math
import os
from typing import Any
from urllib.parse import urlsplit

from traitlets import Bool, Dict, Enum, Float, HasTraits, List, TraitError, TraitType, Unicode, validate

from .context import ContextError, check_budget, check_thresholds
from .secret import Secret

PAYI_DEFAULT_BASE_URL = "https://api.pay-i.com"


def check_base_url(url: str, what: str = "base_url") -> str:
    """An http(s) URL without a trailing slash (the one URL rule: settings, clients, providers)."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what} must be an http(s) URL like https://api.pay-i.com, got {url!r}")
    return url.rstrip("/")


def check_timeout(value: Any, what: str = "timeout") -> float:
    """Seconds to wait: a finite number ≥ 0 (NaN or infinity would wait forever)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number of seconds, e.g. 10, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number of seconds ≥ 0, e.g. 10, got {value!r}")
    return float(value)


class SecretTrait(TraitType[Secret | None, Secret | str | None]):
    """A trait holding a ``Secret``; a string is wrapped. Its errors never echo the value."""

    default_value = None
    allow_none = True
    info_text = "a non-empty token without spaces"

    def validate(self, obj: Any, value: Any) -> Secret | None:
        if value is None or isinstance(value, Secret):
            return value
        if isinstance(value, str) and value.strip() and not any(c.isspace() for c in value.strip()):
            return Secret(value.strip())
        raise TraitError(f"{self.name} must be a non-empty token without spaces (the value is not shown)")


class Settings(HasTraits):
    """Process-wide configuration of capture, flushing and display."""

    api_key = SecretTrait(help="Pay-i API key (PAYI_API_KEY); None starts the local sandbox.")
    base_url = Unicode(PAYI_DEFAULT_BASE_URL, help="Pay-i base URL (PAYI_BASE_URL).")
    mode = Enum(["telemetry", "proxy"], default_value="telemetry", help="Default mode of tracked calls.")
    log_prompt_and_response = Bool(True, help="Send prompt and response bodies to Pay-i.")
    spool_dir = Unicode(None, allow_none=True, help="Directory of the durable send journal.")
    providers = Dict(
        help='Extra provider base URLs, e.g. {"openai": ["http://localhost:8000/v1"]} (OpenAI-compatible gateways).'
    )
    quiet = Bool(False, help="Hide the summary line under tracked cells.")
    create_use_cases = Bool(
        True, help="Define a use case at Pay-i when it answers use_case_not_found, then send its calls again."
    )
    exit_timeout = Float(5.0, help="Seconds the interpreter waits at exit for pending events.")
    session_budget = Float(None, allow_none=True, help="USD every tracked call of this session counts against; None: no session budget.")
    budget_thresholds = List(Float(), default_value=[0.8, 0.95], help="Fractions of a budget that warn once each.")

    @validate("session_budget")
    def _check_session_budget(self, proposal: Any) -> float | None:
        try:
            return check_budget(proposal["value"], "session_budget")
        except ContextError as exc:
            raise TraitError(str(exc)) from None

    @validate("budget_thresholds")
    def _check_thresholds(self, proposal: Any) -> list[float]:
        try:
            return list(check_thresholds(proposal["value"]))
        except ContextError as exc:
            raise TraitError(str(exc)) from None

    @validate("base_url")
    def _check_base_url(self, proposal: Any) -> str:
        try:
            return check_base_url(proposal["value"])
        except ValueError as exc:
            raise TraitError(str(exc)) from None

    @validate("exit_timeout")
    def _check_exit_timeout(self, proposal: Any) -> float:
        try:
            return check_timeout(proposal["value"], "exit_timeout")
        except ValueError as exc:
            raise TraitError(str(exc)) from None

    @validate("providers")
    def _check_providers(self, proposal: Any) -> dict[str, list[str]]:
        from .providers import (
            PROVIDERS,  # the provider modules are the one list of names
        )

        out: dict[str, list[str]] = {}
        for provider, urls in proposal["value"].items():
            if provider not in PROVIDERS:
                raise TraitError(f"unknown provider {provider!r}: use one of {', '.join(PROVIDERS)}")
            if isinstance(urls, str):
                urls = [urls]
            try:
                out[provider] = [check_base_url(u, f"{provider} base URL") for u in urls]
            except ValueError as exc:
                raise TraitError(str(exc)) from None
        return out

    @classmethod
    def from_env(cls) -> Settings:
        """Settings seeded from ``PAYI_API_KEY``, ``PAYI_BASE_URL`` and ``PAYI_NOTEBOOK_SPOOL_DIR``."""
        settings = cls()
        if key := os.environ.get("PAYI_API_KEY", "").strip():
            settings.api_key = key
        if url := os.environ.get("PAYI_BASE_URL", "").strip():
            settings.base_url = url
        if spool := os.environ.get("PAYI_NOTEBOOK_SPOOL_DIR", "").strip():
            settings.spool_dir = spool
        return settings

    def __repr__(self) -> str:
        key = "set" if self.api_key else "unset"
        return f"Settings(base_url={self.base_url!r}, mode={self.mode!r}, api_key={key})"


_current: Settings | None = None


def current_settings() -> Settings:
    """The process's settings, read from the environment on first use.

    ``%config PayiMagics.*`` shows and changes these before the session exists (it is built
    in the background at ``%load_ext``), and the session then starts with them.
    """
    global _current
    if _current is None:
        _current = Settings.from_env()
    return _current


def forget_settings() -> None:
    """The next ``current_settings()`` reads the environment again (the session was closed)."""
    global _current
    _current = None


def magic_traits() -> dict[str, TraitType[Any, Any]]:
    """Fresh copies of the settings' traits (all but the key) for ``PayiMagics``, tagged for ``%config``.

    The settings declare each option once (type, default, help); the magic shows the same ones.
    """
    return {
        name: copy.deepcopy(trait).tag(config=True)
        for name, trait in Settings.class_traits().items()
        if name in MAGIC_SETTINGS
    }


MAGIC_SETTINGS = (
    "mode", "base_url", "log_prompt_and_response", "quiet", "spool_dir", "providers", "exit_timeout",
    "create_use_cases", "session_budget", "budget_thresholds",
)  # fmt: skip
"""The settings ``%config PayiMagics.<name>`` shows (the API key is only ``pn.configure``'s)."""
