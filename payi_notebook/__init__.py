"""payi_notebook: see, attribute and control what your notebook's LLM calls cost, with Pay-i.

In a notebook::

    %load_ext payi_notebook

    %%payi --use-case summarize --user ana --limit team-q4
    client.chat.completions.create(...)   # unchanged provider code

In a script::

    import payi_notebook as pn
    with pn.track(use_case_name="summarize"):
        client.chat.completions.create(...)
    pn.flush()
    pn.ledger().df
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from . import widgets  # lazy: ipywidgets/plotly load on first use of a widget
from .capture import proxy_url
from .context import ContextError, derive
from .ledger import Ledger
from .limits import Limit, LimitError, Limits
from .session import Session, get_session
from .tracking import Track

__all__ = [
    "ContextError",
    "Limit",
    "LimitError",
    "anthropic_url",
    "bedrock_url",
    "configure",
    "dask",
    "emulator_url",
    "flush",
    "ingest",
    "instrument",
    "journal",
    "last_result",
    "ledger",
    "limits",
    "load_ipython_extension",
    "openai_url",
    "proxy",
    "proxy_headers",
    "status",
    "track",
    "unload_ipython_extension",
    "widgets",
]

F = TypeVar("F", bound=Callable[..., Any])


def instrument() -> Session:
    """Install capture in a plain Python process (what ``%load_ext`` does in IPython).

    Returns the running session (endpoint resolved, flusher running, capture installed).
    """
    return get_session().start()


def ledger() -> Ledger:
    """The ledger of captured calls; ``pn.ledger().df`` is the pandas DataFrame."""
    return get_session().ledger


def track(**options: Any) -> Track:
    """Capture calls made inside: ``with pn.track(use_case_name=..., user_id=...):`` or as a decorator.

    Options: use_case_name, use_case_id, use_case_version, use_case_step, user_id,
    account_name, limit_ids, properties, use_case_properties, proxy (True/False),
    log_prompt_and_response, quiet. Invalid values raise ``ContextError`` here, before any call.
    """
    session = instrument()
    if options.get("limit_ids") is not None:
        options["limit_ids"] = session.resolve_limit_ids(options["limit_ids"])
    return Track(session.root_context, **options)


def _mode_decorator(proxy: bool, fn: F | None, options: dict[str, Any]) -> Any:
    tracker = track(proxy=proxy, **options)
    return tracker(fn) if fn is not None else tracker


def ingest(fn: F | None = None, **options: Any) -> Any:
    """Decorator: calls inside go straight to the provider and are ingested afterwards (telemetry)."""
    return _mode_decorator(False, fn, options)


def proxy(fn: F | None = None, **options: Any) -> Any:
    """Decorator: calls inside are routed through the Pay-i proxy (Block limits apply)."""
    return _mode_decorator(True, fn, options)


def flush(timeout: float = 30.0) -> Any:
    """Block until every captured call is delivered to Pay-i (or ``timeout``); returns the counts."""
    return get_session().flush(timeout)


def last_result(wait: float = 2.0) -> dict[str, Any] | None:
    """The ``xproxy_result`` of the latest call, proxied or ingested (waits up to ``wait`` s for ingest)."""
    return get_session().last_result(wait)


def configure(**settings: Any) -> None:
    """Change settings: api_key, base_url, mode, log_prompt_and_response, providers, spool_dir, quiet, exit_timeout."""
    get_session().configure(**settings)


def status() -> Any:
    """Endpoint, mode, pending/sent/failed counts and recent problems."""
    return get_session().status_report()


def journal(action: str | None = None, name: str | None = None) -> str:
    """Events journalled for other Pay-i endpoints: list them; ``journal("deliver", NAME)`` sends
    them to the current endpoint, ``journal("discard", NAME)`` deletes them (NAME or ``"all"``)."""
    return get_session().journal(action, name)


def openai_url() -> str:
    """Base URL for an OpenAI client that goes through the Pay-i proxy by itself."""
    return proxy_url(instrument().endpoint.base_url, "openai")  # type: ignore[union-attr]


def anthropic_url() -> str:
    """Base URL for an Anthropic client that goes through the Pay-i proxy by itself."""
    return proxy_url(instrument().endpoint.base_url, "anthropic")  # type: ignore[union-attr]


def bedrock_url() -> str:
    """Endpoint URL for a boto3 ``bedrock-runtime`` client that goes through the Pay-i proxy by itself
    (its requests then need ``pn.proxy_headers(...)`` and ``xProxy-Provider-BaseUri`` added)."""
    return proxy_url(instrument().endpoint.base_url, "bedrock")  # type: ignore[union-attr]


def emulator_url() -> str | None:
    """The local provider emulator's URL when calls go to the sandbox, else None.

    For notebooks that run offline: ``OpenAI(base_url=f"{pn.emulator_url()}/v1", api_key="emulated")``
    and ``Anthropic(base_url=pn.emulator_url(), api_key="emulated")``; calls to it are captured.
    """
    session = instrument()
    if session.sandbox is not None:
        return session.sandbox.provider_url
    return os.environ.get("PAYI_SANDBOX_PROVIDER_URL") or None


def proxy_headers(**context: Any) -> dict[str, str]:
    """Headers for a client you point at the Pay-i proxy yourself: the Pay-i key plus the context.

    ``OpenAI(base_url=pn.openai_url(), default_headers=pn.proxy_headers(limit_ids=["team-q4"]))``.
    Options as for ``pn.track``. Such calls, made in a tracked scope, are recorded from their
    ``xproxy_result`` and never ingested.
    """
    session = instrument()
    assert session.endpoint is not None
    if context.get("limit_ids") is not None:
        context["limit_ids"] = session.resolve_limit_ids(context["limit_ids"])
    headers = derive(session.root_context(), **context).proxy_headers()
    headers["xProxy-api-key"] = session.endpoint.api_key.reveal()
    return headers


limits = Limits(lambda: instrument().payi_client(), ids=lambda: get_session().limit_ids)
"""Pay-i limits: ``pn.limits.list()``, ``.create(name, max, type=...)``, ``.update``, ``.reset``, ``.delete``."""


def __getattr__(name: str) -> Any:
    """``pn.dask`` is imported on first use (Dask is an optional extra: ``payi_notebook[dask]``)."""
    if name == "dask":
        from importlib import import_module

        return import_module(".dask", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext payi_notebook``."""
    from .magic import load

    load(shell)


def unload_ipython_extension(shell: Any) -> None:
    """``%unload_ext payi_notebook``: remove capture and hooks; pending events are drained."""
    from .magic import unload

    unload(shell)
