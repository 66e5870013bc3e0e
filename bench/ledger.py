"""Ledger benchmark: append rate, DataFrame and partial-frame build times, memory per row.

    python bench/ledger.py [--rows N] [--runs R] [--memory-rows M] [--usages U] [--baseline DIR]

With ``--baseline DIR`` (e.g. a checkout of main) every run is made twice, in fresh
processes taking turns: once with ``payi_notebook`` imported from DIR ("before"), once from
this tree ("after"); the table shows both medians and their ratio, measured side by side.

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
the first ``df`` build, its cached re-access, the rebuild after one more append and after
an update of an old row (delivery's status and cost arrive later); the medians and every
run are printed (the first run in a process pays for memory the process
has never touched, the others reuse what the previous run freed).

Memory is the ledger's own growth, traced with tracemalloc: pools of model names, contexts
and usage maps are made before the baseline (capture has them anyway); each event's own
unique strings are made after it, so whatever the ledger keeps of them is counted.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

# Not ``import _common``: it imports payi_notebook from this tree, and a baseline worker must import DIR's.
HERE = Path(__file__).resolve().parent.parent
ROOT_ENV = "LEDGER_BENCH_ROOT"  # where payi_notebook is imported from (the baseline's worker runs)
sys.path[:0] = [os.environ.get(ROOT_ENV) or str(HERE), str(HERE / "tests")]  # tests/: support.events, the one factory

from payi_notebook.context import Context, derive  # noqa: E402
from payi_notebook.events import UsageEvent  # noqa: E402
from payi_notebook.ledger import Ledger, RowRef  # noqa: E402
from payi_notebook.units import TokenCounts, Units, token_counts, units_for  # noqa: E402

from support.events import usage_event  # noqa: E402

TARGET_APPENDS_PER_S = 200_000
TARGET_BUILD_S = 0.8
TARGET_REBUILD_S = 0.1
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
                    usage_event(
                        provider,
                        operation,
                        category=category,
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


def measure(sessions: Sessions, rows: int) -> dict[str, float]:
    """Appends into a fresh ledger, then cold ``frame()`` builds, the first ``df`` (wall and CPU),
    its cached re-access, a ``frame()`` taken from it, the rebuild after one more append and
    after an update of an old row (all in seconds but the append rate)."""
    appends, ledger = append_run(sessions, rows)
    gc.collect()
    out = {"append rate (k/s)": rows / appends.wall / 1e3}
    for label, columns in FRAMES.items():
        out[f"frame(): {label}"] = timed(lambda columns=columns: ledger.frame(columns)).wall
    first = timed(lambda: ledger.df)
    out["df first build"], out["df first build, CPU time"] = first.wall, first.cpu
    again = []
    for _ in range(5):
        started = time.perf_counter()
        _ = ledger.df
        again.append(time.perf_counter() - started)
    out["df cached re-access"] = statistics.median(again)
    out[f"frame(): {BREAKDOWN}, df cached"] = timed(lambda: ledger.frame(FRAMES[BREAKDOWN])).wall
    rebuilds, updates = [], []
    for i in range(3):
        ledger.append(next(sessions.events(1, start=rows + i))[0])
        rebuilds.append(timed(lambda: ledger.df))
        ledger.update(RowRef(ledger.generation, 1000 + i), status="sent", payi_cost_usd=0.01)
        updates.append(timed(lambda: ledger.df))
    out["df rebuild after one more append"] = statistics.median(c.wall for c in rebuilds)
    out["df rebuild after one more append, CPU time"] = statistics.median(c.cpu for c in rebuilds)
    out["df rebuild after an update of an old row"] = statistics.median(c.wall for c in updates)
    return out


def _by_file(after: tracemalloc.Snapshot, before: tracemalloc.Snapshot) -> dict[str, int]:
    """Growth per allocating file, named relative to the repository."""
    root = HERE
    grown: dict[str, int] = {}
    for stat in after.compare_to(before, "filename"):
        path = Path(stat.traceback[0].filename)
        name = str(path.relative_to(root)) if path.is_relative_to(root) else path.name
        grown[name] = grown.get(name, 0) + stat.size_diff
    return grown


def memory_per_row(rows: int) -> dict[str, float]:
    """What the ledger keeps per row after appends, and after the usual Pay-i updates (B/row),
    and its growth per allocating file after appends."""
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
    out = {"memory after append (B/row)": appended / rows, "memory after Pay-i answers (B/row)": updated / rows}
    for name, size in sorted(_by_file(after_append, base).items(), key=lambda kv: -kv[1]):
        if abs(size) >= rows:  # at least 1 B/row
            out[f"  allocated in {name} (B/row)"] = size / rows
    return out


TARGETS = {
    "append rate (k/s)": f">= {TARGET_APPENDS_PER_S // 1000}",
    "df first build": f"<= {TARGET_BUILD_S}",
    "df rebuild after one more append": f"<= {TARGET_REBUILD_S}",
    "memory after append (B/row)": f"<= {TARGET_BYTES_PER_ROW}",
}


def worker(args: argparse.Namespace) -> None:
    """One run in this process: its figures as one JSON line."""
    sessions = Sessions(usages=args.usages or args.rows)
    out = measure(sessions, args.rows)
    del sessions
    gc.collect()
    if args.memory_rows:
        out.update(memory_per_row(min(args.memory_rows, args.rows)))
    print(json.dumps(out))


def _runs(args: argparse.Namespace, roots: dict[str, str]) -> dict[str, list[dict[str, float]]]:
    """``args.runs`` runs per root, each in a fresh process, the roots taking turns."""
    results: dict[str, list[dict[str, float]]] = {label: [] for label in roots}
    for run in range(args.runs):
        for label, root in roots.items():
            command = [sys.executable, __file__, "--worker", "--rows", str(args.rows)]
            command += ["--memory-rows", str(args.memory_rows if run == 0 else 0)]
            command += ["--usages", str(args.usages)] if args.usages else []
            done = subprocess.run(command, env={**os.environ, ROOT_ENV: root}, capture_output=True, text=True, check=True)
            results[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def _unit(name: str) -> tuple[str, float]:
    if name.startswith(("frame", "df cached", "df rebuild")):
        return "ms", 1e3
    return ("", 1.0) if name.endswith(")") else ("s", 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows appended per run (default 1,000,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per tree, each in a fresh process; medians reported")
    parser.add_argument("--memory-rows", type=int, default=200_000, help="rows for the traced memory run (first run)")
    parser.add_argument("--usages", type=int, help="distinct usage draws (default: one per row; fewer makes units maps repeat)")
    parser.add_argument("--baseline", help="another checkout (e.g. main) to measure side by side as 'before'")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    here = str(HERE)
    roots = {"before": str(Path(args.baseline).resolve()), "after": here} if args.baseline else {"this tree": here}
    print(f"Ledger benchmark, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"{args.rows:,} rows, {args.usages or args.rows:,} usage draws, {args.runs} runs per tree ({', '.join(roots)})")
    results = _runs(args, roots)
    labels = list(roots)
    header = "".join(f"{label:>12}" for label in labels) + ("       ratio" if len(labels) == 2 else "")
    print(f"  {'median':<46}{header}   target   | runs")
    names = dict.fromkeys(name for label in labels for name in results[label][0])
    for name in names:
        unit, scale = _unit(name)
        values = [[r[name] for r in results[label] if name in r] for label in labels]
        medians = [statistics.median(v) if v else math.nan for v in values]
        cells = "".join(f"{m * scale:9.2f} {unit:<2}" for m in medians)
        ratio = f"{medians[1] / medians[0]:11.2f}x" if len(labels) == 2 and medians[0] else ""
        runs = " / ".join(" ".join(f"{r[name] * scale:.2f}" for r in results[label] if name in r) for label in labels)
        print(f"  {name:<46}{cells}{ratio}   {TARGETS.get(name, ''):<8} | {runs}")
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
