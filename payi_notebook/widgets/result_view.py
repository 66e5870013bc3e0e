"""``ResultView``: what Pay-i said about one call, readable at a glance.

Renders an ``xproxy_result`` (cost, each limit's state in its colour, blocked limits,
warnings, ids, use case, unknown units, duplicate flag) or a Pay-i error body
(``{statusCode, message, xproxy_error: {code, message}, xproxy_result}``, e.g. a call a
Block limit stopped), with the error on top. It is static HTML with a text twin, so it
stays in the saved notebook and in any export; ``widget()`` wraps it for layouts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import current, xproxy
from .style import BORDER, ERROR, MUTED, TABLE, box, chip, esc, money, muted, state_chip

_LATEST = object()


def _body_of(source: Any) -> Any:
    """A dict from what people have at hand: a dict, an SDK error or an SDK response object."""
    if source is None or isinstance(source, Mapping):
        return source
    response = getattr(source, "response", None)
    if isinstance(source, BaseException) and response is not None:
        try:
            return response.json()  # the whole body: SDKs keep only its "error" part in .body
        except Exception:  # not JSON, or a stream never read: the SDK's own .body below is the answer
            pass
    body = getattr(source, "body", None)
    if isinstance(body, Mapping):
        return body
    for name in ("to_dict", "model_dump"):
        method = getattr(source, name, None)
        if callable(method):
            return method()
    raise TypeError(
        "ResultView needs an xproxy_result dict, a Pay-i error body or an SDK response/error, "
        f"got {type(source).__name__}"
    )


class ResultView:
    """One call's Pay-i result. ``ResultView()`` shows ``pn.last_result()``.

    ``source``: an ``xproxy_result`` dict, a Pay-i error body, a provider response carrying
    ``xproxy_result``, or an SDK exception/response object holding one of those.
    """

    def __init__(self, source: Any = _LATEST) -> None:
        if source is _LATEST:
            source = current.session().last_result(2.0)
        body = _body_of(source)
        self.error: dict[str, Any] | None = None
        self.status_code: Any = None
        self.message: str | None = None
        self.result: dict[str, Any] | None = None
        if isinstance(body, Mapping):
            nested = xproxy.of_body(body)
            if "xproxy_error" in body or ("statusCode" in body and "message" in body):
                error = body.get("xproxy_error")
                self.error = dict(error) if isinstance(error, Mapping) else {}
                self.status_code = body.get("statusCode")
                self.message = body.get("message") if isinstance(body.get("message"), str) else None
                self.result = dict(nested) if nested is not None else None
            elif nested is not None:
                self.result = dict(nested)
            else:
                self.result = dict(body)

    # -- content, shared by both renderings ---------------------------------------------------

    def _cost(self) -> str | None:
        parts, currency = xproxy.cost_parts(self.result)
        if self.result and self.result.get("unknown_units") and xproxy.cost(self.result) is None:
            return "unpriced: Pay-i has no price for these units (see unknown units)"
        if not parts:
            return None
        return " · ".join(f"{key} {money(value)}" for key, value in parts.items()) + (f" ({currency.upper()})" if currency else "")

    def limits(self) -> dict[str, str]:
        """Limit id → state as Pay-i reported it (``state`` or the spec example's ``State``)."""
        return xproxy.limit_states(self.result)

    def _fields(self) -> list[tuple[str, str]]:
        """(label, plain text) rows in display order; the HTML view escapes them."""
        r = self.result or {}
        rows: list[tuple[str, str]] = []
        cost = self._cost()
        if cost:
            rows.append(("cost", cost))

        def add(label: str, *keys: str, sep: str = " · ") -> None:
            values = [str(r[k]) for k in keys if r.get(k) not in (None, "", [])]
            if values:
                rows.append((label, sep.join(values)))

        request_id = xproxy.request_id(r)
        if request_id:
            rows.append(("request id", request_id))
        add("resource", "resource_id")
        add("use case", "use_case_name", "use_case_id", "use_case_step")
        add("user", "user_id")
        add("account", "account_name")
        for label, key in (("warnings", "warnings"), ("actions", "actions"), ("tags", "request_tags")):
            items = r.get(key)
            if isinstance(items, list) and items:
                rows.append((label, "; ".join(str(item) for item in items)))
        unknown = r.get("unknown_units")
        if isinstance(unknown, Mapping) and unknown:
            rows.append(("unknown units", "; ".join(f"{unit}: {_sides(sides)}" for unit, sides in unknown.items())))
        if r.get("duplicate_request"):
            rows.append(("duplicate", "Pay-i had already recorded this provider response: not counted again"))
        if r.get("queued"):
            rows.append(("queued", "Pay-i queued this event; its cost may arrive later"))
        return rows

    def _headline(self) -> str:
        if self.error is not None:
            code = self.error.get("code")
            text = self.error.get("message") or self.message or "Pay-i refused the request"
            status = f"HTTP {self.status_code}: " if self.status_code is not None else ""
            return f"{status}{code + ': ' if code else ''}{text}"
        return ""

    def _blocked(self) -> list[str]:
        return xproxy.blocked_limit_ids(self.result)

    # -- renderings ---------------------------------------------------------------------------

    def html(self) -> str:
        if self.result is None and self.error is None:
            return box(muted("No Pay-i result yet: run a tracked call first."), "payi-result")
        parts = []
        if self.error is not None:
            title = "Blocked by Pay-i" if self.error.get("code") == "limit_reached" else "Pay-i error"
            parts.append(
                f'<div class="payi-error" style="border:1px solid {ERROR};border-left:4px solid {ERROR};'
                f'border-radius:4px;padding:4px 8px;margin-bottom:6px;color:{ERROR}">'
                f"<b>{esc(title)}</b> · {esc(self._headline())}</div>"
            )
        rows = []
        limits = self.limits()
        if limits:
            chips = "".join(state_chip(state.lower(), f"{limit_id}: {state}") for limit_id, state in limits.items())
            rows.append(("limits", chips))
        blocked = self._blocked()
        if blocked:
            rows.append(("blocked by", "".join(chip(i, ERROR) for i in blocked)))
        rows += [(label, esc(value)) for label, value in self._fields()]
        body = "".join(
            f'<tr style="background:transparent"><th style="text-align:right;vertical-align:top;'
            f"padding:1px 10px 1px 0;color:{MUTED};"
            f'font-weight:500;white-space:nowrap">{esc(label)}</th><td style="text-align:left">{value}</td></tr>'
            for label, value in rows
        )
        head = "<b>payi</b> · Pay-i result" if self.result is not None else "<b>payi</b>"
        table = f'<table style="{TABLE}">{body}</table>' if rows else ""
        return box(
            f'<div style="border-bottom:1px solid {BORDER};padding-bottom:2px">{head}</div>' + "".join(parts) + table,
            "payi-result",
        )

    def text(self) -> str:
        if self.result is None and self.error is None:
            return "payi: no Pay-i result yet (run a tracked call first)"
        lines = []
        if self.error is not None:
            title = "BLOCKED by Pay-i" if self.error.get("code") == "limit_reached" else "Pay-i ERROR"
            lines.append(f"{title}: {self._headline()}")
        rows = []
        limits = self.limits()
        if limits:
            rows.append(("limits", ", ".join(f"{i}: {s}" for i, s in limits.items())))
        if self._blocked():
            rows.append(("blocked by", ", ".join(self._blocked())))
        rows += self._fields()
        if rows:
            width = max(len(label) for label, _ in rows)
            lines += [f"{label.rjust(width)}: {value}" for label, value in rows]
        return "\n".join(["payi · Pay-i result", *lines])

    def widget(self) -> Any:
        """The view as an ``ipywidgets.HTML``, to place in a layout."""
        import ipywidgets

        return ipywidgets.HTML(self.html())

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        return self.text()


def _sides(sides: Any) -> str:
    if isinstance(sides, Mapping):
        return ", ".join(f"{side} {value}" for side, value in sides.items())
    return str(sides)
