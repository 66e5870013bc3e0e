"""The widgets, driven programmatically in a plain process: real ledger rows, real sandbox.

Breakdown numbers are checked against pandas groupbys computed here from ``ledger.df``;
ResultView renders what the real sandbox answered (proxied, ingested, blocked); the
BudgetPanel is clicked through against the sandbox and checked with ``pn.limits``.
"""

from __future__ import annotations

import html
import math
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell

import payi_notebook as pn
from payi_notebook.client import PayiClient
from payi_notebook.context import Context
from payi_notebook.events import UsageEvent
from payi_notebook.ledger import Ledger, RowRef
from payi_notebook.limits import Limits
from payi_notebook.session import Session, get_session
from payi_notebook.units import TokenCounts
from payi_notebook.widgets import Badge, BadgeBoard, BudgetPanel, CostBreakdown, ResultView
from payi_notebook.widgets.aggregate import GROUPS, MAX_POINTS
from payi_notebook.widgets.view import WIDGET_MIME

pytestmark = pytest.mark.timeout(120)

XSS_LIMIT = "<img src=x onerror=alert(1)>"
XSS_MODEL = "gpt-<script>alert('m')</script>"
XSS_USER = "<script>alert('u')</script>"
RAW_TAGS = ("<img", "<script")


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, step: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def no_raw_tags(markup: str) -> None:
    for tag in RAW_TAGS:
        assert tag not in markup, f"unescaped {tag!r} in {markup[:300]!r}"


# -- ledger rows ---------------------------------------------------------------------------

MODELS = ("gpt-4o-mini", "claude-haiku-4-5", XSS_MODEL, None)
USERS = ("ana", "bo", XSS_USER, None)
LIMIT_SETS = ((), ("team-q4",), ("team-q4", XSS_LIMIT), ("org",))


def fill(ledger: Ledger, rows: int, seed: int = 1, start: float = 1_767_000_000.0) -> None:
    """Real UsageEvents with varied attribution, tokens, costs (some Pay-i's, some unpriced)."""
    rng = random.Random(seed)
    contexts = [
        Context(use_case_name=uc, user_id=user, account_name=account, limit_ids=limits)
        for uc in ("summarize", "classify", None)
        for user in USERS
        for account in ("acme", None)
        for limits in LIMIT_SETS
    ]
    for i in range(rows):
        inp = rng.randint(10, 5000)
        cached = rng.choice((0, 0, min(1024, inp)))
        est = rng.choice((rng.random() / 100, rng.random() / 50, None))
        cells = (("cell-a", rng.choice((1, 4))), ("cell-b", rng.choice((2, 5))), ("cell-c", 7), (None, None))
        cell_id, run = rng.choice(cells)
        payi = rng.random() / 100 if rng.random() < 0.4 else None
        ledger.append(
            UsageEvent(
                provider=rng.choice(("openai", "anthropic")),
                category="system.openai",
                operation=rng.choice(("chat", "responses", "messages")),
                resource=rng.choice(MODELS),
                mode=rng.choice(("telemetry", "proxy")),
                timestamp=start + i * rng.uniform(0.1, 3.0),
                tokens=TokenCounts(inp, rng.randint(1, 800), cached, 0, 0),
                status=rng.choice(("pending", "sent", "proxied", "failed")),
                context=rng.choice(contexts),
                cell_id=cell_id,
                execution_count=run,
                est_cost_usd=est,
                payi_cost_usd=payi,
            )
        )


@pytest.fixture
def ledger() -> Ledger:
    led = Ledger()
    fill(led, 400)
    return led


@pytest.fixture
def breakdown(ledger: Ledger) -> Iterator[CostBreakdown]:
    widget = CostBreakdown(ledger, top=50, interval=0.05)
    yield widget
    widget.close()


def label(key: Any) -> str:
    return "(none)" if key is None or (isinstance(key, float) and math.isnan(key)) else html.escape(str(key))


def expected_groups(df: pd.DataFrame, column: str, value: str) -> dict[str, float]:
    """What the bars must show, computed independently from the full frame."""
    if column == "limit_ids":
        df = df.assign(limit_ids=[ids or [None] for ids in df["limit_ids"]]).explode("limit_ids")
    if value == "input_tokens":
        df = df.assign(input_tokens=df["input_tokens"] - df["cache_read_tokens"])
    sums = df.astype({column: object}).groupby(column, dropna=False)[value].sum()
    return {label(key): float(total) for key, total in sums.items()}


def shown(widget: CostBreakdown, series: str = "cost (USD)") -> dict[str, float]:
    """Label -> value of one series of the bars as drawn; the chart holds one mark per non-zero value."""
    plotted = widget.plotted
    marks = sum(1 for name, values in plotted.items() if name != "labels" for v in values if v > 0)
    assert widget.svgs[0].count('class="payi-mark"') == marks
    assert widget.bars.value.count('class="payi-mark"') == marks
    return {html.escape(label): value for label, value in zip(plotted["labels"], plotted[series])}


# -- CostBreakdown -------------------------------------------------------------------------


@pytest.mark.parametrize("by", [g for g in GROUPS if g != "cell"])
def test_breakdown_bars_equal_a_pandas_groupby(breakdown: CostBreakdown, ledger: Ledger, by: str) -> None:
    df = ledger.df
    column = "limit_ids" if by == "limit" else GROUPS[by]
    breakdown.group_by.value = by
    assert shown(breakdown) == pytest.approx(expected_groups(df, column, "cost_usd"))
    costs = breakdown.plotted["cost (USD)"]
    assert costs == sorted(costs, reverse=True)
    breakdown.metric.value = "tokens"
    assert set(breakdown.plotted) == {"labels", "input", "cached input", "output"}
    assert shown(breakdown, "input") == expected_groups(df, column, "input_tokens")
    assert shown(breakdown, "cached input") == expected_groups(df, column, "cache_read_tokens")
    assert shown(breakdown, "output") == expected_groups(df, column, "output_tokens")


def test_cells_are_labelled_by_their_latest_run(breakdown: CostBreakdown, ledger: Ledger) -> None:
    df = ledger.df
    breakdown.group_by.value = "cell"
    runs = df.astype({"cell_id": object}).groupby("cell_id", dropna=False)["execution_count"].max()
    costs = expected_groups(df, "cell_id", "cost_usd")
    want = {("(none)" if pd.isna(run) else f"In [{int(run)}]"): costs[label(key)] for key, run in runs.items()}
    assert set(want) == {"In [4]", "In [5]", "In [7]", "(none)"}
    assert shown(breakdown) == pytest.approx(want)


def test_small_groups_merge_into_other(ledger: Ledger) -> None:
    widget = CostBreakdown(ledger, by="user", top=3, live=False)
    try:
        labels, costs = widget.plotted["labels"], widget.plotted["cost (USD)"]
        assert len(labels) == 3 and labels[-1] == "other (2)"
        assert sum(costs) == pytest.approx(ledger.df["cost_usd"].sum())
    finally:
        widget.close()


def test_caption_says_whose_costs_these_are(breakdown: CostBreakdown, ledger: Ledger) -> None:
    df = ledger.df
    by_source = df.groupby("cost_source", observed=False)["cost_usd"].sum()
    share = by_source["payi"] / by_source.sum()
    unpriced = int((df["cost_source"] == "unknown").sum())
    caption = breakdown.caption.value
    assert f"Pay-i {share:.0%} / estimated {1 - share:.0%}" in caption
    assert f"{unpriced:,} unpriced" in caption and "400 calls" in caption


def test_cumulative_cost_is_exact_and_downsampled() -> None:
    led = Ledger()
    fill(led, 3 * MAX_POINTS, seed=5)
    widget = CostBreakdown(led, live=False)
    try:
        xs, ys = widget.breakdown.times, widget.breakdown.cumulative  # type: ignore[union-attr]
        df = led.df
        assert len(ys) <= MAX_POINTS + 1
        assert ys[-1] == pytest.approx(df["cost_usd"].sum())
        assert all(a <= b for a, b in zip(ys, ys[1:]))
        assert widget.svgs[1].count('class="payi-mark"') == 1, "past MAX_DOTS points only the last one is a dot"
        # every point is the true running total up to its time (bins end on their right edge)
        ordered = df.sort_values("timestamp")
        ts = ordered["timestamp"].dt.tz_localize(None).to_numpy()
        cum = ordered["cost_usd"].fillna(0).cumsum().to_numpy()
        offset = pd.Timestamp.now().tz_localize(None) - pd.Timestamp.now("UTC").tz_localize(None)
        for x, y in list(zip(xs, ys))[:: MAX_POINTS // 7]:
            upto = ts <= pd.Timestamp(x) - offset.round("s")
            assert y == pytest.approx(cum[upto][-1] if upto.any() else 0.0)
    finally:
        widget.close()


def test_small_ledgers_plot_every_call(ledger: Ledger, breakdown: CostBreakdown) -> None:
    ys = breakdown.breakdown.cumulative  # type: ignore[union-attr]
    assert len(ys) == len(ledger)
    assert ys[-1] == pytest.approx(ledger.df["cost_usd"].sum())
    assert breakdown.timeline.value.count("<path") == 2  # the area and the line through every point


def test_live_updates_are_debounced_and_stop_on_close(ledger: Ledger) -> None:
    widget = CostBreakdown(ledger, interval=0.1)
    before = widget.refreshes

    def burst() -> None:
        fill(ledger, 300, seed=9, start=1_768_000_000.0)

    thread = threading.Thread(target=burst)
    started = time.monotonic()
    thread.start()
    thread.join()
    assert wait_for(lambda: widget.breakdown.calls == 700)  # type: ignore[union-attr]
    elapsed = time.monotonic() - started
    assert widget.refreshes - before <= 1 + elapsed / 0.1  # at most one per interval, not one per append
    assert sum(widget.plotted["cost (USD)"]) == pytest.approx(ledger.df["cost_usd"].sum())
    widget.close()
    count = widget.refreshes
    fill(ledger, 5, seed=3, start=1_769_000_000.0)
    time.sleep(0.3)
    assert widget.refreshes == count
    assert widget._repr_mimebundle_ is None and "700 calls" in widget._repr_html_()


def test_names_are_escaped_in_every_view(breakdown: CostBreakdown) -> None:
    for by in ("model", "user", "limit"):
        breakdown.group_by.value = by
        assert any("&lt;" in markup for markup in breakdown.svgs)
        for markup in (breakdown.html(images=False), breakdown.caption.value, breakdown.bars.value, *breakdown.svgs):
            no_raw_tags(markup)
    assert XSS_LIMIT in breakdown.text()  # plain text shows names as they are


def test_breakdown_display_bundle_has_widget_html_and_text(breakdown: CostBreakdown) -> None:
    data = breakdown._repr_mimebundle_()
    assert data[WIDGET_MIME]["model_id"] == breakdown.head.model_id
    assert "<table" in data["text/html"] and "cost by model" in data["text/html"]
    assert data["text/html"].count('<img alt="') == 2, "one bundle (a layout): both charts as images"
    assert data["text/plain"].startswith("payi · cost by model")
    assert "gpt-4o-mini" in data["text/plain"]


def displayed(outputs: list[Any]) -> list[dict[str, Any]]:
    """The latest bundle of each display id, in the order they were first shown."""
    latest: dict[str, dict[str, Any]] = {}
    for output in outputs:
        latest[output.transient["display_id"]] = output.data
    return list(latest.values())


def test_breakdown_shows_three_outputs_each_with_its_static_twin(breakdown: CostBreakdown) -> None:
    from IPython.display import display
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()
    with capture_output() as captured:
        display(breakdown)
    head, bars, line = (output.data for output in captured.outputs)
    assert [head[WIDGET_MIME]["model_id"], bars[WIDGET_MIME]["model_id"], line[WIDGET_MIME]["model_id"]] == [
        breakdown.head.model_id, breakdown.bars.model_id, breakdown.timeline.model_id
    ]  # fmt: skip
    assert "<table" in head["text/html"] and "<img" not in head["text/html"]  # charts are their own outputs
    assert bars["image/svg+xml"] == breakdown.svgs[0] and bars["image/svg+xml"] in breakdown.bars.value
    assert line["image/svg+xml"] == breakdown.svgs[1] and line["image/svg+xml"] in breakdown.timeline.value
    assert all(output.transient["display_id"] for output in captured.outputs)


def test_static_twins_follow_the_ledger_and_stop_on_close(ledger: Ledger) -> None:
    from IPython.display import display
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()
    widget = CostBreakdown(ledger, interval=0.05)
    with capture_output() as captured:
        display(widget)
        fill(ledger, 50, seed=11, start=1_768_500_000.0)
        assert wait_for(lambda: "450 calls" in displayed(captured.outputs)[0]["text/html"], timeout=15)
        head, bars, line = displayed(captured.outputs)
        assert "450 calls" in head["text/plain"]
        assert bars["image/svg+xml"] == widget.svgs[0] and line["image/svg+xml"] == widget.svgs[1]
        assert any(output.update for output in captured.outputs)
        widget.close()
        sent = len(captured.outputs)
        fill(ledger, 5, seed=12, start=1_768_600_000.0)
        time.sleep(1.5)
        assert len(captured.outputs) == sent, "a closed breakdown sends nothing"


def test_one_call_draws_a_point() -> None:
    led = Ledger()
    fill(led, 1, seed=2)
    widget = CostBreakdown(led, live=False)
    try:
        assert widget.svgs[1].count('class="payi-mark"') == 1 and "<circle" in widget.timeline.value
    finally:
        widget.close()


def test_unpriced_calls_say_so_in_every_view() -> None:
    """A model nobody can price: Pay-i answers a total of 0 with unknown units, the local estimate is NaN."""
    led = Ledger()
    ref = led.append(
        UsageEvent(provider="openai", category="system.openai", operation="chat", resource="gpt-nobody-knows",
                   tokens=TokenCounts(input=10, output=5), est_cost_usd=None, context=Context(use_case_name="x"))
    )  # fmt: skip
    from payi_notebook.xproxy import cost as payi_cost

    result = {"cost": {"total": {"base": 0.0}}, "unknown_units": {"text": {"input": 10, "output": 5}}}
    led.update(ref, xproxy_result=result, payi_cost_usd=payi_cost(result), status="sent")
    badge = Badge(led.totals([ref]))
    for text in (badge.text(), badge.html()):
        assert "unpriced" in text and "no known price for gpt-nobody-knows" in text and "$0" not in text
    widget = CostBreakdown(led, live=False)
    try:
        for text in (widget.text(), widget.html(), widget.caption.value, widget.svgs[0]):
            assert "unpriced" in text and "$0 " not in text
        assert "no known price for gpt-nobody-knows" in widget.caption.value
    finally:
        widget.close()
    view = ResultView(result)
    assert "unpriced" in view.text() and "unpriced" in view.html()


def test_bad_arguments_say_what_to_fix(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="cannot group by 'colour'; use one of: model, cell"):
        CostBreakdown(ledger, by="colour")
    with pytest.raises(ValueError, match="metric must be one of cost, tokens"):
        CostBreakdown(ledger, metric="euros")
    for name, label in (("use_case_name", "use case"), ("limit_ids", "limit"), ("Use-Case", "use case")):
        widget = CostBreakdown(ledger, by=name, live=False)
        assert widget.group_by.value == label
        widget.close()


def test_an_empty_ledger_renders() -> None:
    widget = CostBreakdown(Ledger(), live=False)
    try:
        assert widget.plotted["labels"] == [] and len(widget.breakdown.cumulative) == 0  # type: ignore[union-attr]
        assert all("no calls yet" in markup for markup in widget.svgs)
        assert "0 calls" in widget.html() and "no calls yet" in widget.text()
    finally:
        widget.close()


# -- Badge ---------------------------------------------------------------------------------


class Handle:
    """Stands in for IPython's DisplayHandle: records what would be shown."""

    def __init__(self, shown: list[str]) -> None:
        self.shown = shown

    def update(self, badge: Badge) -> None:
        self.shown.append(badge.text())


def test_badge_updates_in_place_when_pay_i_answers() -> None:
    led = Ledger()
    refs = [
        led.append(UsageEvent(provider="openai", category="system.openai", operation="chat", resource="gpt-4o-mini",
                              tokens=TokenCounts(1200, 300, 1024, 0, 0), est_cost_usd=0.0004,
                              context=Context(limit_ids=(XSS_LIMIT,))))
        for _ in range(2)
    ]  # fmt: skip
    shown: list[str] = []
    board = BadgeBoard(led, lambda badge: (shown.append(badge.text()), Handle(shown))[1], delay=0.02)
    badge = board.show(refs)
    assert shown[0] == "payi · 2 calls · 2,400 in (2,048 cached) / 600 out tokens · $0.0008 (estimated) · 2 pending"
    for ref in refs:
        answer = {"limits": {XSS_LIMIT: {"state": "exceeded"}}}
        led.update(ref, status="sent", payi_cost_usd=0.0005, xproxy_result=answer)
    assert wait_for(lambda: len(shown) > 1 and "(Pay-i)" in shown[-1])
    assert shown[-1] == (
        "payi · 2 calls · 2,400 in (2,048 cached) / 600 out tokens · $0.001 (Pay-i) · 2 sent · "
        f"limits {XSS_LIMIT}: exceeded"
    )
    final = Badge(led.totals(refs)).html()
    assert html.escape(XSS_LIMIT) in final and "#bf8700" in final  # exceeded chip, amber
    no_raw_tags(final)
    assert "(estimated)" in badge.html()
    board.close()


def test_an_answer_that_lands_while_the_badge_is_first_drawn_still_updates_it() -> None:
    """Pay-i's answer can arrive between the badge's first render and its registration as live
    (the first cell after load, a fast sandbox): that change must not be lost."""
    led = Ledger()
    ref = led.append(UsageEvent(provider="openai", category="system.openai", operation="chat", resource="gpt-4o-mini",
                                tokens=TokenCounts(1200, 300, 0, 0, 0), est_cost_usd=0.0004))  # fmt: skip
    shown: list[str] = []

    def display(badge: Badge) -> Handle:  # the answer lands while the first badge is being shown
        shown.append(badge.text())
        led.update(ref, status="sent", payi_cost_usd=0.0005)
        return Handle(shown)

    board = BadgeBoard(led, display, delay=0.02)
    board.show([ref])
    assert "1 pending" in shown[0]
    assert wait_for(lambda: "(Pay-i)" in shown[-1], timeout=5.0), shown
    board.close()


# -- ResultView ----------------------------------------------------------------------------


@pytest.fixture
def session_env(sandbox_env: Any) -> Iterator[Any]:
    pn.instrument()
    yield sandbox_env


def openai_client(sandbox: Any) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=sandbox.provider_url + "/v1", api_key="sk-test", max_retries=0)


MSG = [{"role": "user", "content": "Two lines on the quarter."}]


def test_result_view_of_a_proxied_call(session_env: Any) -> None:
    limit = pn.limits.create(f"wide-{time.time_ns()}", 100.0)
    client = openai_client(session_env)
    with pn.track(proxy=True, limit_ids=[limit.limit_id], use_case_name="summarize", user_id="ana"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    view = ResultView()
    result = pn.last_result()
    assert view.result == result
    markup = view.html()
    assert html.escape(result["request_id"]) in markup
    assert f"total ${result['cost']['total']['base']:.6f}".rstrip("0") in view.text()
    assert f"{limit.limit_id}: ok" in view.text() and "#1a7f37" in markup  # ok chip, green
    assert "summarize" in view.text() and "ana" in view.text()
    client.close()


def test_result_view_of_an_ingested_call(session_env: Any) -> None:
    client = openai_client(session_env)
    with pn.track(user_id="bo"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    pn.flush(15)
    view = ResultView()
    assert view.result is not None and view.result["request_id"]
    cost = pn.ledger().df.iloc[-1]["payi_cost_usd"]
    assert f"total ${cost:.6f}".rstrip("0") in view.text()
    client.close()


def test_result_view_of_a_blocked_call(session_env: Any) -> None:
    from openai import BadRequestError

    limit = pn.limits.create(f"tiny-{time.time_ns()}", 0.000001, type="block")
    client = openai_client(session_env)
    error = None
    with pn.track(proxy=True, limit_ids=[limit.limit_id]):
        for _ in range(3):
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
            except BadRequestError as exc:
                error = exc
                break
    assert error is not None, "the block limit never blocked"
    view = ResultView(error)
    assert view.error is not None and view.error["code"] == "limit_reached"
    assert limit.limit_id in view.text() and "BLOCKED by Pay-i: HTTP 400: limit_reached" in view.text()
    markup = view.html()
    assert "payi-error" in markup and "Blocked by Pay-i" in markup
    assert f"{html.escape(limit.limit_id)}: blocked" in markup and "#cf222e" in markup
    assert ResultView(error.response.json()).text() == view.text()
    client.close()


def test_result_view_escapes_and_shows_every_field() -> None:
    result = {
        "request_id": "<b>r1</b>",
        "use_case_name": "<script>x</script>",
        "use_case_id": "uc-1",
        "use_case_step": "draft",
        "user_id": XSS_USER,
        "limits": {XSS_LIMIT: {"state": "overrun"}, "b": {"state": "blocked_external"}},
        "blocked_limit_ids": [XSS_LIMIT],
        "warnings": ["<img src=y onerror=alert(2)> unknown resource"],
        "unknown_units": {"<i>audio</i>": {"input": 5}},
        "duplicate_request": True,
        "cost": {"currency": "usd", "input": {"base": 0.001}, "output": {"base": 0.002}, "total": {"base": 0.003}},
    }
    view = ResultView(result)
    markup = view.html()
    no_raw_tags(markup)
    assert "<b>r1</b>" not in markup and "<i>audio</i>" not in markup
    assert html.escape(XSS_LIMIT) in markup and "#8250df" in markup  # blocked_external, purple
    text = view.text()
    for piece in ("input $0.001", "output $0.002", "total $0.003", "(USD)", "uc-1", "draft", "not counted again",
                  "audio</i>: input 5", f"{XSS_LIMIT}: overrun", "blocked by: " + XSS_LIMIT):  # fmt: skip
        assert piece in text
    assert "tex2jax_ignore mathjax_ignore" in markup  # "$0.001 ... $0.003" must not become LaTeX
    error = ResultView({"statusCode": 401, "message": "<bad key>", "xproxy_error": {"code": "invalid_api_key"}})
    assert "Pay-i error" in error.html() and "&lt;bad key&gt;" in error.html()
    assert "No Pay-i result yet" in ResultView(None).html()
    with pytest.raises(TypeError, match="ResultView needs an xproxy_result dict"):
        ResultView(42)


# -- BudgetPanel ---------------------------------------------------------------------------


@pytest.fixture
def panel(session_env: Any) -> Iterator[BudgetPanel]:
    widget = BudgetPanel()
    yield widget
    widget.close()


def listed(limit_id: str) -> dict[str, Any] | None:
    frame = pn.limits.list()
    rows = frame[frame["limit_id"] == limit_id].to_dict("records")
    return rows[0] if rows else None


def ids_named(name: str) -> list[str]:
    return [limit.limit_id for limit in pn.limits.all(name)]


def test_budget_panel_create_set_max_reset_delete(panel: BudgetPanel, session_env: Any) -> None:
    name = f"team-{time.time_ns()}"
    panel.new_name.value = name
    panel.new_max.value = 5.0
    panel.new_type.value = "allow"
    panel.new_threshold.value = "0.8"
    panel.create_button.click()
    (limit_id,) = ids_named(name)
    row = listed(limit_id)
    assert row is not None and (row["max"], row["limit_type"], row["threshold"]) == (5.0, "allow", 0.8)
    assert panel.message == ("done", f"created allow limit {name!r} of $5.0000") and panel.new_name.value == ""
    assert name in panel.row(limit_id).info.value and "risk at 80%" in panel.row(limit_id).info.value

    panel.row(limit_id).max.value = 25.0
    panel.row(limit_id).set_max.click()
    assert listed(limit_id)["max"] == 25.0  # type: ignore[index]

    client = openai_client(session_env)
    with pn.track(limit_ids=[limit_id]):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    pn.flush(15)
    client.close()
    panel.refresh_button.click()
    spent = listed(limit_id)["spent"]  # type: ignore[index]
    assert spent > 0 and panel.row(limit_id).limit.spent == spent

    panel.row(limit_id).max.value = spent / 2  # below what was spent: Pay-i refuses
    panel.row(limit_id).set_max.click()
    kind, text = panel.message  # type: ignore[misc]
    assert kind == "error" and "invalid_max_limit_update" in text
    assert "invalid_max_limit_update" in panel.notice.value and "#cf222e" in panel.notice.value

    panel.row(limit_id).reset.click()
    assert listed(limit_id)["spent"] == 0  # type: ignore[index]
    assert panel.message == ("done", f"{limit_id} reset to $0 spent")

    row_widgets = panel.row(limit_id)
    row_widgets.delete.click()
    assert row_widgets.confirm.layout.display is None and row_widgets.delete.layout.display == "none"
    row_widgets.cancel.click()
    assert row_widgets.confirm.layout.display == "none" and listed(limit_id) is not None
    row_widgets.delete.click()
    row_widgets.confirm.click()
    assert listed(limit_id) is None and limit_id not in panel._rows
    assert panel.message == ("done", f"deleted {limit_id}")


def test_budget_panel_shows_pay_i_errors_inside(panel: BudgetPanel) -> None:
    name = f"dup-{time.time_ns()}"
    assert panel.create(name, 3.0)
    panel.new_name.value = name
    panel.new_max.value = 4.0
    panel.create_button.click()  # same name: Pay-i refuses
    assert panel.message[0] == "error" and "limit_name_already_exist" in panel.message[1]  # type: ignore[index]
    assert len(ids_named(name)) == 1 and panel.new_name.value == name  # the form keeps what was typed
    panel.new_threshold.value = "most"
    panel.create_button.click()
    assert panel.message == ("error", "risk threshold must be a fraction of max such as 0.8, or empty; got 'most'")
    panel.new_name.value = ""
    panel.new_threshold.value = ""
    panel.create_button.click()
    assert "limit name must be a non-empty string" in panel.message[1]  # type: ignore[index]


def test_budget_panel_escapes_limit_names(panel: BudgetPanel) -> None:
    assert panel.create(XSS_LIMIT, 2.0, type="block", threshold=0.9)
    (limit_id,) = [i for i in ids_named(XSS_LIMIT) if i in panel._rows][-1:]
    for markup in (panel.row(limit_id).info.value, panel.html(), panel.notice.value, panel.header.value):
        no_raw_tags(markup)
    assert html.escape(XSS_LIMIT) in panel.html() and XSS_LIMIT in panel.text()
    data = panel._repr_mimebundle_()
    assert set(data) >= {"text/plain", "text/html", WIDGET_MIME}
    no_raw_tags(data["text/html"])
    pn.limits.delete(limit_id)


def test_budget_panel_refreshes_after_each_tracked_cell(panel: BudgetPanel, session_env: Any) -> None:
    session = get_session()
    assert panel._after_cell in session.cell_listeners
    limit = pn.limits.create(f"cell-{time.time_ns()}", 50.0)
    assert wait_for(lambda: panel.refresh() and limit.limit_id in panel._rows)
    client = openai_client(session_env)
    with pn.track(limit_ids=[limit.limit_id]) as scope:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    client.close()
    session.after_cell(scope, None)  # what the %%payi post-run hook does
    assert wait_for(lambda: panel.row(limit.limit_id).limit.spent > 0)
    assert "$50.0000" in panel.row(limit.limit_id).info.value
    panel.close()
    assert panel._after_cell not in session.cell_listeners


def test_budget_panel_with_pay_i_unreachable_shows_why() -> None:
    session = Session()
    dead = Limits(lambda: PayiClient("http://127.0.0.1:9", "k" * 20, timeout=2.0))
    widget = BudgetPanel(limits=dead, session=session)
    try:
        kind, text = widget.message  # type: ignore[misc]
        assert kind == "error" and text.startswith("could not read the limits:")
        assert widget.limits == [] and "could not read the limits" in widget.notice.value
        assert not widget.reset("some-id") and widget.message[0] == "error"  # type: ignore[index]
    finally:
        widget.close()
    assert session.cell_listeners == []


# -- magics and imports --------------------------------------------------------------------


@pytest.fixture
def shell(sandbox_env: Any) -> Iterator[InteractiveShell]:
    ip = InteractiveShell.instance()
    ip.user_ns["PROVIDER_URL"] = sandbox_env.provider_url
    assert ip.run_cell("%load_ext payi_notebook").success
    yield ip
    ip.run_cell("%unload_ext payi_notebook")


def test_magics_return_the_widgets(shell: InteractiveShell) -> None:
    shell.run_cell(
        "from openai import OpenAI\n"
        "oa = OpenAI(base_url=PROVIDER_URL + '/v1', api_key='sk-test', max_retries=0)"
    )
    ran = shell.run_cell("%%payi --user <script>x</script> --proxy\noa.chat.completions.create(model='gpt-4o-mini', "
                         "messages=[{'role': 'user', 'content': 'hi'}])")  # fmt: skip
    assert ran.success
    by_user = shell.run_cell("%payi breakdown --by user").result
    assert isinstance(by_user, CostBreakdown) and by_user.group_by.value == "user"
    assert by_user.plotted["labels"] == ["<script>x</script>"] and "&lt;script&gt;x" in by_user.svgs[0]
    by_user.close()
    assert shell.run_cell("%payi breakdown --by=use-case").result.group_by.value == "use case"
    bad = shell.run_cell("%payi breakdown --by colour")
    assert not bad.success and "cannot group by 'colour'" in str(bad.error_in_exec)
    result = shell.run_cell("%payi result").result
    assert isinstance(result, ResultView) and result.result == pn.last_result()
    budget = shell.run_cell("%payi budget").result
    assert isinstance(budget, BudgetPanel) and budget._after_cell in get_session().cell_listeners
    budget.close()


def test_importing_the_package_does_not_load_widget_libraries() -> None:
    code = (
        "import sys, payi_notebook as pn, payi_notebook.magic\n"
        "assert 'ipywidgets' not in sys.modules and 'plotly' not in sys.modules, 'eager widget import'\n"
        "assert pn.widgets.ResultView.__name__ == 'ResultView' and 'ipywidgets' not in sys.modules\n"
        "assert pn.widgets.CostBreakdown.__name__ == 'CostBreakdown'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_stale_refs_and_unknown_rows_do_not_break_a_badge() -> None:
    led = Ledger()
    ref = led.append(UsageEvent(provider="openai", category="system.openai", operation="chat", resource="x-unknown"))
    led.reset()
    badge = Badge(led.totals([ref, RowRef(99, 0)]))
    assert badge.text() == "payi · 0 calls · 0 in / 0 out tokens · $0 (unpriced)"


def test_nbconvert_without_widget_state_shows_the_snapshot(breakdown: CostBreakdown) -> None:
    import nbformat
    from IPython.display import display
    from IPython.utils.capture import capture_output
    from nbconvert import HTMLExporter

    InteractiveShell.instance()
    with capture_output() as captured:
        display(breakdown)
    outputs = [nbformat.v4.new_output("display_data", data=output.data) for output in captured.outputs]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("%payi breakdown", outputs=outputs)])
    page, _ = HTMLExporter().from_notebook_node(nb)
    assert "payi-breakdown-static" in page and "cost by model" in page
    assert page.count('src="data:image/svg+xml;base64,') == 2, "both charts, as images"
    assert "gpt-&lt;script&gt;alert(" in page and "<script>alert(" not in page


def test_rerunning_a_cell_retires_the_views_it_showed(shell: InteractiveShell) -> None:
    """The old breakdown stops following the ledger and closes its widgets: nothing is sent to views gone."""
    led = get_session().ledger
    subscribers = len(led._subscribers)  # type: ignore[attr-defined]
    assert shell.run_cell("b1 = %payi breakdown\nb1", cell_id="cell-a").success
    first = shell.user_ns["b1"]
    assert first.head.comm is not None and len(led._subscribers) == subscribers + 1  # type: ignore[attr-defined]
    assert shell.run_cell("b2 = %payi breakdown\nb2", cell_id="cell-a").success
    assert first.head.comm is None and first.bars.comm is None and first._closed, "the replaced view is closed"
    assert len(led._subscribers) == subscribers + 1, "no leaked ledger observer"  # type: ignore[attr-defined]
    second = shell.user_ns["b2"]
    assert shell.run_cell("b3 = %payi breakdown\nb3", cell_id="cell-b").success
    assert second.head.comm is not None, "a view shown by another cell stays live"
    for name in ("b2", "b3"):
        shell.user_ns[name].close()


def test_payi_df_is_money_first_and_the_ledger_keeps_every_column(shell: InteractiveShell) -> None:
    from payi_notebook.ledger import COLUMNS

    shell.run_cell(
        "from openai import OpenAI\n"
        "oa = OpenAI(base_url=PROVIDER_URL + '/v1', api_key='sk-test', max_retries=0)"
    )
    assert shell.run_cell("%%payi --user ana\noa.chat.completions.create(model='gpt-4o-mini', "
                          "messages=[{'role': 'user', 'content': 'hi'}])").success  # fmt: skip
    view = shell.run_cell("%payi df").result
    assert list(view.columns[:3]) == ["cost ($)", "cost from", "model"]
    assert view["model"].iloc[-1] == "gpt-4o-mini" and view["user"].iloc[-1] == "ana"
    assert view["cost ($)"].iloc[-1] > 0 and view.index.name == "time"
    assert list(pn.ledger().df.columns) == list(COLUMNS)
