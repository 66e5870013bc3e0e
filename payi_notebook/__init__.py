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
import sys
from collections.abc import Callable
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from . import current, widgets  # widgets is lazy: ipywidgets/plotly load on first use of a widget

if TYPE_CHECKING:  # imported on first use (see ``_LAZY``), so ``%load_ext`` stays fast
    import pandas as pd

    from . import ledger, limits
    from .analytics.calls import AnalyticsError
    from .analytics.kpis import Kpi
    from .analytics.use_cases import UseCase
    from .budgets import BudgetExceeded, BudgetWarning
    from .children import ChildState, child_init, child_state
    from .context import ContextError
    from .limits import Limit, LimitError
    from .session import Session
    from .tracking import Track

__all__ = [
    "AnalyticsError",
    "BudgetExceeded",
    "BudgetWarning",
    "ChildState",
    "ContextError",
    "Kpi",
    "Limit",
    "LimitError",
    "UseCase",
    "annotate",
    "anthropic_url",
    "bedrock_url",
    "child_init",
    "child_state",
    "configure",
    "dask",
    "emulator_url",
    "estimate",
    "flush",
    "ingest",
    "instrument",
    "journal",
    "kpi",
    "kpis",
    "last_result",
    "ledger",
    "limits",
    "load_ipython_extension",
    "openai_url",
    "outcomes",
    "progress",
    "proxy",
    "proxy_headers",
    "report",
    "status",
    "track",
    "unload_ipython_extension",
    "use_cases",
    "widgets",
]

F = TypeVar("F", bound=Callable[..., Any])


def instrument() -> Session:
    """Install capture in a plain Python process (what ``%load_ext`` does in IPython).

    Returns the running session (endpoint resolved, flusher running, capture installed).
    """
    return get_session().start()


def get_session() -> Session:
    """The process's session (created on first use, not started)."""
    from .session import get_session as _get

    return _get()


current.provide(get_session)  # the modules below the session (widgets, budgets, ledger) find it here


def track(**options: Any) -> Track:
    """Capture calls made inside: ``with pn.track(use_case_name=..., user_id=...):`` or as a decorator.

    Options: use_case_name, use_case_id, use_case_version, use_case_step, user_id,
    account_name, limit_ids, properties, use_case_properties, proxy (True/False),
    log_prompt_and_response, quiet, budget (USD; a call that could pass it raises
    ``BudgetExceeded`` before it is sent). Invalid values raise ``ContextError`` here, before any call.
    """
    session = instrument()
    if options.get("limit_ids") is not None:
        options["limit_ids"] = session.resolve_limit_ids(options["limit_ids"])
    from .tracking import Track

    return Track(session.root_context, **options)


def estimate(model: str, messages: Any = None, max_tokens: int | None = None, n: int = 1, **request: Any) -> Any:
    """Low and high USD of ``n`` calls like this one, before making any (a one-row DataFrame)."""
    from .budgets.estimate import estimate as _estimate

    return _estimate(model, messages, max_tokens, n, **request)


def progress(iterable: Any, total: int | None = None, budget: float | None = None, **options: Any) -> Any:
    """A tqdm bar over ``iterable`` with spend so far, per item and projected; stops at ``budget`` USD."""
    from .budgets.progress import progress as _progress

    return _progress(iterable, total=total, budget=budget, **options)


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
    """Change settings: api_key, base_url, mode, log_prompt_and_response, providers, spool_dir, quiet, exit_timeout,
    session_budget (USD), budget_thresholds."""
    get_session().configure(**settings)


def status() -> Any:
    """Endpoint, mode, pending/sent/failed counts and recent problems."""
    return get_session().status_report()


def journal(action: str | None = None, name: str | None = None) -> str:
    """Events journalled for other Pay-i endpoints: list them; ``journal("deliver", NAME)`` sends
    them to the current endpoint, ``journal("discard", NAME)`` deletes them (NAME or ``"all"``)."""
    return get_session().journal(action, name)


def _proxy_url(provider: str) -> str:
    from .capture import proxy_url

    endpoint = instrument().endpoint
    assert endpoint is not None
    return proxy_url(endpoint.base_url, provider)


def openai_url() -> str:
    """Base URL for an OpenAI client that goes through the Pay-i proxy by itself."""
    return _proxy_url("openai")


def anthropic_url() -> str:
    """Base URL for an Anthropic client that goes through the Pay-i proxy by itself."""
    return _proxy_url("anthropic")


def bedrock_url() -> str:
    """Endpoint URL for a boto3 ``bedrock-runtime`` client that goes through the Pay-i proxy by itself
    (its requests then need ``pn.proxy_headers(...)`` and ``xProxy-Provider-BaseUri`` added)."""
    return _proxy_url("bedrock")


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
    """Headers for a client you point at the Pay-i proxy yourself: the Pay-i key plus the context you give.

    ``OpenAI(base_url=pn.openai_url(), default_headers=pn.proxy_headers(limit_ids=["team-q4"]))``.
    Options as for ``pn.track``. A call through such a client in a tracked scope also carries
    the scope's context (these headers win where both say something), is recorded from its
    ``xproxy_result`` and is never ingested; outside a scope it sends just these headers.
    """
    session = instrument()
    assert session.endpoint is not None
    if context.get("limit_ids") is not None:
        context["limit_ids"] = session.resolve_limit_ids(context["limit_ids"])
    from .context import Context, derive

    headers = derive(Context(), **context).proxy_headers()
    headers["xProxy-api-key"] = session.endpoint.api_key.reveal()
    return headers


_LAZY = {  # name → module that defines it; imported on first use, then kept in globals()
    "AnalyticsError": ".analytics.calls",
    "BudgetExceeded": ".budgets",
    "BudgetWarning": ".budgets",
    "ChildState": ".children",
    "child_init": ".children",
    "child_state": ".children",
    "ContextError": ".context",
    "Kpi": ".analytics.kpis",
    "UseCase": ".analytics.use_cases",
    "Limit": ".limits",
    "LimitError": ".limits",
    "use_cases": ".facade",
    "kpis": ".facade",
    "_payi_client": ".facade",
    "_notes": ".facade",
}
_RENAMED = {"_payi_client": "payi_client", "_notes": "notes"}
_MODULES = ("dask", "ledger", "limits")  # ``pn.limits`` and ``pn.ledger`` are modules that stand for the session's own


def __getattr__(name: str) -> Any:
    """The names in ``_LAZY`` and the ``dask``/``limits`` modules, imported on first use.

    ``pn.dask`` needs the optional extra ``payi_notebook[dask]``.
    """
    if name in _MODULES:
        return import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_MODULES})


def kpi(
    name: str,
    score: float | bool | None = None,
    *,
    add: float | None = None,
    use_case_name: str | None = None,
    use_case_id: str | None = None,
) -> float:
    """Score the current use case instance (the tracked cell's) on KPI ``name``; returns the score now.

    ``pn.kpi("accepted", 1)`` sets it; ``pn.kpi("turns", add=1)`` adds to it, and concurrent
    additions from threads or tasks of this process all count. Outside a tracked cell pass
    ``use_case_name=`` and ``use_case_id=``.
    """
    if (score is None) == (add is None):
        from .analytics.calls import AnalyticsError

        raise AnalyticsError('pn.kpi(name, score) sets a score and pn.kpi(name, add=1) adds to it: give one of the two')
    if add is not None:
        return _facade().kpis.increment(name, add, use_case_name=use_case_name, use_case_id=use_case_id)
    return _facade().kpis.score(name, score, use_case_name=use_case_name, use_case_id=use_case_id)


def annotate(target: Any, /, **properties: Any) -> dict[str, str]:
    """Set request properties after the call ran, at Pay-i and in the ledger: ``pn.annotate(row, verdict="good")``.

    ``target``: a row of ``pn.ledger().df`` or its ``event_id`` / ``payi_request_id`` /
    ``provider_response_id``. ``None`` removes a property. Returns the row's properties now.
    """
    return _facade().annotator(target, **properties)


def report(report_id: str, start: Any = None, end: Any = None) -> pd.DataFrame:
    """A saved Pay-i report for [``start``, ``end``) as a DataFrame (Pay-i's CSV report route)."""
    return _facade().reports(report_id, start, end)


def outcomes(fetch: bool = False) -> pd.DataFrame:
    """One row per use case instance in the ledger: version, calls, tokens, ``cost_usd`` and ``kpi_*`` scores.

    ``fetch=True`` first reads the instances' scores from Pay-i (scores set elsewhere).
    Cost per accepted answer by version: ``o = pn.outcomes(); s = o.groupby("use_case_version")
    [["cost_usd", "kpi_accepted"]].sum(); s.cost_usd / s.kpi_accepted``.
    """
    from .analytics.outcomes import instances

    df = get_session().ledger.df
    if fetch:
        pairs = df[["use_case_name", "use_case_id"]].dropna().drop_duplicates()
        _facade().kpis.fetch([(str(n), str(i)) for n, i in pairs.itertuples(index=False)])
        df = get_session().ledger.df
    return instances(df)


def _facade() -> Any:
    return import_module(".facade", __name__)


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext payi_notebook``."""
    from .magic import load

    load(shell)


def unload_ipython_extension(shell: Any) -> None:
    """``%unload_ext payi_notebook``: remove capture and hooks; pending events are drained."""
    from .magic import unload

    unload(shell)


class _Package(ModuleType):
    """This package, pickled by name (cloudpickle pickles functions that use ``pn``)."""

    def __reduce__(self) -> tuple[Callable[[str], ModuleType], tuple[str]]:
        """Pickled by name, like any module (cloudpickle pickles functions that use ``pn``; Dask tokenizes them)."""
        return import_module, (self.__name__,)


sys.modules[__name__].__class__ = _Package
