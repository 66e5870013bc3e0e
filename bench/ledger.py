"""Ledger benchmark: append rate, DataFrame and partial-frame build times, memory per row.

    python bench/ledger.py [--rows N] [--runs R] [--memory-rows M] [--usages U]

Events look like a long notebook session: several providers, models and operations, cells
re-run with different use cases, users, limits and properties, unique event and provider
response ids, varied token counts (cache reads, reasoning, a few 1-hour cache writes and
web searches whose units the ledger must keep as given), some streaming, some proxy-mode
calls carrying an ``xproxy_result``. Every call has its own usage draw, so units maps repeat
only as often as chance makes them (embeddings, mostly); ``--usages`` draws fewer, for a
session that repeats prompts. Only the ``append`` calls are timed, not event creation.
Capture appends each event right after making it, so events are made in small batches and
appended at once (a batch of 50,000 made ahead, cold in the CPU caches, costs ~15% more).

Each run fills a fresh ledger, then times ``frame()`` for what the cost breakdown asks for,
the first ``df`` build, its cached re-access and the rebuild after one more append; the
medians and every run are printed (the first run in a process pays for memory the process
has never touched, the others reuse what the previous run freed).

Memory is the ledger's own growth, traced with tracemalloc: pools of model names, contexts
and usage maps are made before the baseline (capture has them anyway); each event's own
unique strings are made after it, so whatever the ledger keeps of them is counted.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from payi_notebook.context import Context, derive  # noqa: E402
from payi_notebook.events import UsageEvent  # noqa: E402
from payi_notebook.ledger import Ledger, RowRef  # noqa: E402
from payi_notebook.units import TokenCounts, Units, token_counts, units_for  # noqa: E402

TARGET_APPENDS_PER_S = 200_000
TARGET_BUILD_S = 2.0
TARGET_BYTES_PER_ROW = 400
CHUNK = 100  # events made, then appended, per batch
BREAKDOWN = "breakdown by model (7 columns)"
FRAMES = {  # what the cost breakdown asks for
    "resource, timestamp, cost_usd": ["resource", "timestamp", "cost_usd"],
    BREAKDOWN: [
        "resource",
        "timestamp",
        "cost_source",
        "cost_usd",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
    ],
    "limit_id (exploded), cost_usd, input_tokens": ["limit_id", "cost_usd", "input_tokens"],
}

OPENAI_CHAT = "https://api.openai.com/v1/chat/completions"
OPENAI_RESPONSES = "https://api.openai.com/v1/responses"
OPENAI_EMBEDDINGS = "https://api.openai.com/v1/embeddings"
ANTHROPIC_MESSAGES = "https://api.anthropic.com/v1/messages"

# provider, category, operation, model, provider URI, usage kind
ENDPOINTS = (
    ("openai", "system.openai", "chat", "gpt-4o-mini", OPENAI_CHAT, "chat"),
    ("openai", "system.openai", "chat", "gpt-4o", OPENAI_CHAT, "chat"),
    ("openai", "system.openai", "responses", "gpt-4.1", OPENAI_RESPONSES, "responses"),
    ("openai", "system.openai", "responses", "o4-mini", OPENAI_RESPONSES, "reasoning"),
    ("openai", "system.openai", "embeddings", "text-embedding-3-small", OPENAI_EMBEDDINGS, "embeddings"),
    ("anthropic", "system.anthropic", "messages", "claude-sonnet-4-5", ANTHROPIC_MESSAGES, "anthropic"),
    ("anthropic", "system.anthropic", "messages", "claude-haiku-4-5", ANTHROPIC_MESSAGES, "anthropic"),
)
USE_CASES = ("summarize", "classify", "extract-entities", "qa-bot", "translate", "rerank")
USERS = tuple(f"user-{i:02d}" for i in range(25))
ACCOUNTS = ("acme", "globex", "initech", None)
LIMITS = ("team-q4", "project-x", "ana-daily", "org-monthly")
STEPS = (None, "draft", "review", "final")


def _usage(kind: str, rng: random.Random) -> dict:
    prompt = rng.randint(20, 12_000)
    completion = rng.randint(1, 1_500)
    cached = rng.choice((0, 0, 0, 1024, 2048)) if prompt > 2048 else 0
    if kind == "chat":
        details = {"cached_tokens": cached}
        return {"prompt_tokens": prompt, "completion_tokens": completion, "prompt_tokens_details": details}
    if kind == "embeddings":
        return {"prompt_tokens": prompt, "total_tokens": prompt}
    if kind in ("responses", "reasoning"):
        reasoning = rng.randint(0, completion) if kind == "reasoning" else 0
        return {
            "input_tokens": prompt,
            "output_tokens": completion,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens_details": {"reasoning_tokens": reasoning},
        }
    usage = {
        "input_tokens": prompt,
        "output_tokens": completion,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": rng.choice((0, 0, 0, 512)),
    }
    roll = rng.random()
    if roll < 0.01:  # 1-hour cache writes: the ledger must keep this map as given
        usage["cache_creation"] = {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 4096}
    elif roll < 0.02:
        usage["server_tool_use"] = {"web_search_requests": rng.randint(1, 3)}
    return usage


def pay_i_result(rng: random.Random, model: str, ctx: Context) -> dict:
    """An ``xproxy_result`` shaped like Pay-i's answer to an ingest or proxied call."""
    cost_in, cost_out = rng.random() / 200, rng.random() / 200
    return {
        "request_id": str(rng.getrandbits(60)),
        "resource_id": f"{model}.2025-01-01",
        "use_case_id": ctx.use_case_id,
        "user_id": ctx.user_id,
        "limits": {limit: {"state": rng.choice(("ok", "ok", "ok", "exceeded"))} for limit in ctx.limit_ids},
        "cost": {
            "currency": "usd",
            "input": {"base": cost_in},
            "output": {"base": cost_out},
            "total": {"base": cost_in + cost_out},
        },
    }


class Sessions:
    """Pools shared by many events (made before the memory baseline) and a fast event maker."""

    def __init__(self, usages: int, seed: int = 7, cell_runs: int = 600) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.runs: list[tuple[Context, str, int, str]] = []
        for run in range(cell_runs):
            ctx = derive(
                Context(),
                use_case_name=rng.choice(USE_CASES),
                use_case_version=rng.choice((None, 1, 2)),
                use_case_step=rng.choice(STEPS),
                user_id=rng.choice(USERS),
                account_name=rng.choice(ACCOUNTS),
                limit_ids=rng.sample(LIMITS, rng.randint(0, 2)),
                properties={"experiment": f"exp-{rng.randint(1, 9)}", "notebook": "analysis.ipynb"}
                if rng.random() < 0.5
                else None,
            )
            self.runs.append((ctx, f"cell-{run % 40:02d}", run + 1, rng.choice(("telemetry",) * 9 + ("proxy",))))
        # Event i takes draw i % usages: with as many draws as rows, every call has its own usage.
        self.usages: list[tuple[int, Units, TokenCounts]] = []
        for _ in range(usages):
            e = rng.randrange(len(ENDPOINTS))
            units = units_for(ENDPOINTS[e][0], _usage(ENDPOINTS[e][5], rng))
            self.usages.append((e, units, token_counts(units)))

    def events(self, rows: int, start: int = 0) -> Iterator[list[UsageEvent]]:
        """Chunks of fresh events (unique ids and response ids) for rows ``start .. start+rows``."""
        rng = self.rng
        per_run = max(rows // len(self.runs), 1)
        t0 = 1_767_000_000.0
        done = 0
        while done < rows:
            chunk = []
            for i in range(start + done, start + min(done + CHUNK, rows)):
                ctx, cell_id, execution_count, mode = self.runs[(i // per_run) % len(self.runs)]
                e, units, tokens = self.usages[i % len(self.usages)]
                provider, category, operation, model, uri, kind = ENDPOINTS[e]
                streaming = kind != "embeddings" and rng.random() < 0.3
                prefix = "msg_01" if provider == "anthropic" else "chatcmpl-"
                xproxy = None
                status = "pending"
                if mode == "proxy":
                    status = "proxied"
                    xproxy = pay_i_result(rng, model, ctx)
                chunk.append(
                    UsageEvent(
                        provider=provider,
                        category=category,
                        operation=operation,
                        resource=model,
                        mode=mode,
                        streaming=streaming,
                        event_id=f"{rng.getrandbits(128):032x}",
                        timestamp=t0 + i * 0.05,
                        provider_response_id=f"{prefix}{rng.getrandbits(120):030x}",
                        units=units,
                        tokens=tokens,
                        latency_ms=rng.uniform(80, 9000),
                        ttft_ms=rng.uniform(50, 800) if streaming else None,
                        http_status=200,
                        status=status,
                        context=ctx,
                        execution_count=execution_count,
                        cell_id=cell_id,
                        provider_uri=uri,
                        xproxy_result=xproxy,
                        est_cost_usd=rng.random() / 100,
                        payi_cost_usd=xproxy["cost"]["total"]["base"] if xproxy else None,
                    )
                )
            done += len(chunk)
            yield chunk


class Clock:
    """Wall and CPU seconds of the timed sections (CPU time shows what other processes took)."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu


def append_run(sessions: Sessions, rows: int) -> tuple[Clock, Ledger]:
    """``rows`` appends into a fresh ledger, timing only the appends."""
    ledger = Ledger()
    clock = Clock()
    for chunk in sessions.events(rows):
        append = ledger.append
        with clock:
            for event in chunk:
                append(event)
    return clock, ledger


def timed(build: Callable[[], object]) -> Clock:
    with Clock() as clock:
        build()
    return clock


@dataclass
class Run:
    """One run's figures (seconds)."""

    appends_per_s: float
    frames: dict[str, float]
    first: Clock
    cached: float
    frame_from_df: float
    rebuild: Clock


def measure(sessions: Sessions, rows: int) -> Run:
    """Appends into a fresh ledger, then cold ``frame()`` builds, the first ``df``, its cached
    re-access, a ``frame()`` taken from it, and the rebuild after one more append."""
    appends, ledger = append_run(sessions, rows)
    gc.collect()
    frames = {label: timed(lambda columns=columns: ledger.frame(columns)).wall for label, columns in FRAMES.items()}
    first = timed(lambda: ledger.df)
    again = []
    for _ in range(5):
        started = time.perf_counter()
        ledger.df
        again.append(time.perf_counter() - started)
    from_df = timed(lambda: ledger.frame(FRAMES[BREAKDOWN])).wall
    ledger.append(next(sessions.events(1, start=rows))[0])
    rebuild = timed(lambda: ledger.df)
    return Run(rows / appends.wall, frames, first, statistics.median(again), from_df, rebuild)


def _by_file(after: tracemalloc.Snapshot, before: tracemalloc.Snapshot) -> dict[str, int]:
    """Growth per allocating file, named relative to the repository."""
    root = Path(__file__).resolve().parent.parent
    grown: dict[str, int] = {}
    for stat in after.compare_to(before, "filename"):
        path = Path(stat.traceback[0].filename)
        name = str(path.relative_to(root)) if path.is_relative_to(root) else path.name
        grown[name] = grown.get(name, 0) + stat.size_diff
    return grown


def memory_per_row(rows: int) -> None:
    """Print what the ledger keeps per row after appends, and after the usual Pay-i updates."""
    sessions = Sessions(usages=rows, seed=11)
    ledger = Ledger()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    start = tracemalloc.get_traced_memory()[0]
    for chunk in sessions.events(rows):
        for event in chunk:
            ledger.append(event)
        del chunk
    gc.collect()
    appended = tracemalloc.get_traced_memory()[0] - start
    after_append = tracemalloc.take_snapshot()
    rng = random.Random(3)
    for index in range(rows):
        result = pay_i_result(rng, rng.choice(ENDPOINTS)[3], Context(limit_ids=("team-q4",)))
        ledger.update(
            RowRef(ledger.generation, index),
            status="sent",
            xproxy_result=result,
            payi_cost_usd=result["cost"]["total"]["base"],
            payi_request_id=result["request_id"],
            limit_states={lid: state["state"] for lid, state in result["limits"].items()},
        )
    gc.collect()
    updated = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    print(f"memory, {rows:,} rows (tracemalloc, everything retained after the events are dropped):")
    print(f"  after append             {appended / rows:7.1f} B/row   target <= {TARGET_BYTES_PER_ROW}")
    for name, size in sorted(_by_file(after_append, base).items(), key=lambda kv: -kv[1]):
        if abs(size) >= rows:  # at least 1 B/row
            print(f"    {size / rows:7.1f} B/row allocated in {name}")
    print(f"  after Pay-i answers      {updated / rows:7.1f} B/row   (+ status, cost, request id, limit states, xproxy_result)")


def _line(label: str, values: list[float], unit: str, scale: float = 1.0, target: str = "") -> None:
    runs = "  ".join(f"{v * scale:8.2f}" for v in values)
    print(f"  {label:<44} {statistics.median(values) * scale:8.2f} {unit:<3} | {runs}  {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows appended per run (default 1,000,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs, each on a fresh ledger; medians are reported")
    parser.add_argument("--memory-rows", type=int, default=200_000, help="rows for the traced memory run")
    parser.add_argument(
        "--usages", type=int, help="distinct usage draws (default: one per row; fewer makes units maps repeat)"
    )
    args = parser.parse_args()
    rows = args.rows

    print(f"Ledger benchmark, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    sessions = Sessions(usages=args.usages or rows)
    results = []
    for _ in range(args.runs):
        results.append(measure(sessions, rows))
        gc.collect()  # the run's ledger and frames are gone before the next one starts
    print(f"{rows:,} rows, {len(sessions.usages):,} usage draws; median | each of {args.runs} runs")
    _line("append rate (k/s)", [r.appends_per_s for r in results], "k/s", 1e-3, f"target >= {TARGET_APPENDS_PER_S:,}/s")
    for label in FRAMES:
        _line(f"frame(): {label}", [r.frames[label] for r in results], "ms", 1e3)
    _line("df first build", [r.first.wall for r in results], "s", 1.0, f"target <= {TARGET_BUILD_S} s")
    _line("df first build, CPU time", [r.first.cpu for r in results], "s")
    _line("df cached re-access", [r.cached for r in results], "ms", 1e3)
    _line(f"frame(): {BREAKDOWN}, df cached", [r.frame_from_df for r in results], "ms", 1e3)
    _line("df rebuild after one more append", [r.rebuild.wall for r in results], "s")
    print(f"load after: {os.getloadavg()[0]:.1f}")
    gc.collect()
    memory_per_row(min(args.memory_rows, rows))


if __name__ == "__main__":
    main()
