"""Bounds and reservations without mocks: the bound of real requests against the emulator's own
token counts and the sandbox's prices, unbounded requests named, and a budget hammered by
threads that never lets reservations pass it."""

from __future__ import annotations

import math
import threading

import orjson
import pytest

from payi_notebook.budgets import BudgetExceeded, LocalBudget, check_budget
from payi_notebook.budgets.bounds import actual_cost, output_limit, rates, request_bound
from payi_notebook.context import ContextError
from payi_notebook.pricing import price_units
from payi_notebook.sandbox.emulator import anthropic_messages, openai_chat

PROMPTS = [
    "Hello",
    "Summarise our quarterly numbers in one line.",
    "x" * 5000,
    "ünïcödé — 漢字 and emoji 🎉🎉 " * 50,
    "a b c d e f g , . ; : ! ? " * 200,
]


@pytest.mark.parametrize("text", PROMPTS)
def test_the_input_bound_covers_what_the_emulator_bills(text: str) -> None:
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]}
    raw = orjson.dumps(chat)
    assert request_bound("openai", "chat", chat, raw).input_tokens >= len(openai_chat.render_prompt(chat))
    claude = {"model": "claude-haiku-4-5", "max_tokens": 10, "system": "Be brief.", "messages": [{"role": "user", "content": text}]}
    raw = orjson.dumps(claude)
    assert request_bound("anthropic", "messages", claude, raw).input_tokens >= len(anthropic_messages.render_prompt(claude))


def test_output_bound_follows_the_cap_then_the_model_limit() -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    raw = orjson.dumps(body)
    assert request_bound("openai", "chat", body, raw).output_tokens == output_limit("gpt-4o-mini") == 16_384
    capped = {**body, "max_completion_tokens": 50, "n": 3}
    bound = request_bound("openai", "chat", capped, orjson.dumps(capped))
    assert (bound.output_tokens, bound.output_source) == (150, "max_completion_tokens × n=3")
    unlisted = {"model": "gpt-4o-mini-2024-07-18", "messages": body["messages"]}
    assert request_bound("openai", "chat", unlisted, orjson.dumps(unlisted)).output_tokens == 16_384


def test_the_usd_bound_is_at_least_the_price_of_the_bounded_tokens() -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 300, "messages": [{"role": "user", "content": "hi " * 100}]}
    bound = request_bound("anthropic", "messages", body, orjson.dumps(body))
    priced = price_units("system.anthropic", "claude-sonnet-4-5", {"text": {"input": bound.input_tokens, "output": 300}})
    assert bound.usd >= priced.total > 0
    cached = {**body, "system": [{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}
    write = price_units("system.anthropic", "claude-sonnet-4-5", {"text_cache_write_1h": {"input": 10_000}}).total
    assert request_bound("anthropic", "messages", cached, orjson.dumps(cached)).usd > bound.usd
    assert rates("system.anthropic", "claude-sonnet-4-5").input >= write / 10_000


def test_images_add_their_allowance_and_files_fall_back_to_the_context_window() -> None:
    image = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}]}  # fmt: skip
    raw = orjson.dumps(image)
    assert request_bound("openai", "chat", image, raw).input_tokens == len(raw) + 10_240
    pdf = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f1"}}]}]}
    assert request_bound("openai", "chat", pdf, orjson.dumps(pdf)).input_tokens == 128_000


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"model": "no-such-model-1", "messages": []}, "no price for model"),
        ({"model": "gpt-5", "input": "hi", "tools": [{"type": "web_search"}]}, "hosted tools (web_search)"),
        ({"messages": []}, "names no model"),
    ],
)
def test_requests_without_a_bound_say_why(body: dict, reason: str) -> None:
    bound = request_bound("openai", "responses", body, orjson.dumps(body))
    assert math.isinf(bound.usd) and reason in (bound.reason or "")
    budget = LocalBudget(1.0, "cell budget")
    refusal = budget.reserve("k", bound.usd)
    assert refusal is not None and budget.state().reserved == 0


def test_actual_cost_matches_genai_prices() -> None:
    units = {"text": {"input": 1234, "output": 567}, "text_cache_read": {"input": 1000}, "reasoning": {"output": 64}}
    for category, model in (("system.openai", "gpt-4o-mini"), ("system.openai", "o4-mini")):
        assert actual_cost(category, model, units) == pytest.approx(price_units(category, model, units).total, rel=1e-9)
    claude = {"text": {"input": 10, "output": 20}, "text_cache_write_1h": {"input": 3000}, "text_cache_read": {"input": 500}}
    assert actual_cost("system.anthropic", "claude-haiku-4-5", claude) == pytest.approx(
        price_units("system.anthropic", "claude-haiku-4-5", claude).total, rel=1e-9
    )
    assert math.isnan(actual_cost("system.openai", "no-such-model-1", units))


def test_threads_never_reserve_past_the_budget() -> None:
    budget = LocalBudget(1.0, "cell budget", thresholds=(0.5,))
    over: list[float] = []
    admitted: list[int] = []
    crossed: list[float] = []

    def worker(n: int) -> None:
        for i in range(2_000):
            key = f"{n}-{i}"
            if budget.reserve(key, 0.01) is None:
                admitted.append(1)
                state = budget.state()
                if state.spent + state.reserved > 1.0 + 1e-9:
                    over.append(state.spent + state.reserved)
                crossed.extend(budget.settle(key, 0.004))
                budget.settle(key, 0.004)  # a second settle of a key changes nothing

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = budget.state()
    assert not over and state.spent <= 1.0 and state.reserved == 0
    assert state.spent == pytest.approx(0.004 * len(admitted)) and state.spent > 1.0 - 0.01
    assert crossed == [0.5] and state.refused == 8 * 2_000 - len(admitted)


def test_budget_values_are_validated() -> None:
    assert check_budget("$0.50") == 0.5 and check_budget(2) == 2.0
    for bad in (0, -1, "abc", float("nan"), float("inf"), True, [1]):
        with pytest.raises(ContextError, match="budget must be"):
            check_budget(bad)


def test_budget_exceeded_carries_the_numbers_and_one_line() -> None:
    budget = LocalBudget(0.5, "cell budget")
    budget.reserve("a", 0.3)
    budget.settle("a", 0.2)
    refusal = budget.reserve("b", 0.35)
    exc = BudgetExceeded(refusal)
    assert (exc.budget, exc.spent, exc.reserved, exc.bound) == (0.5, pytest.approx(0.2), 0.0, 0.35)
    assert exc._render_traceback_() == [str(exc)] and "cell budget of $0.5000" in str(exc)
    assert not isinstance(exc, Exception)  # SDKs must not wrap and retry it


def test_session_budget_and_thresholds_settings_are_validated() -> None:
    from traitlets import TraitError

    from payi_notebook.config import Settings

    settings = Settings()
    settings.session_budget = 5
    settings.budget_thresholds = [0.95, 0.5]
    assert settings.session_budget == 5.0 and settings.budget_thresholds == [0.5, 0.95]
    with pytest.raises(TraitError, match="session_budget must be a positive amount"):
        settings.session_budget = -1
    with pytest.raises(TraitError, match="fractions in"):
        settings.budget_thresholds = [1.5]
