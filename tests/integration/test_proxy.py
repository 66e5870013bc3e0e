"""Proxy mode in a real IPython shell: provider calls routed through the sandbox's Pay-i proxy,
results in the ledger, Block limits, and exactly one Pay-i event per call in every mix of modes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import payi_notebook as pn
from payi_notebook.secret import Secret
from payi_notebook.session import get_session

from support.shells import loaded_shell, ok, rows, run

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def shell(sandbox_env: Any) -> Iterator[InteractiveShell]:
    yield from loaded_shell(
        sandbox_env,
        "import payi_notebook as pn\n"
        "from openai import OpenAI, AsyncOpenAI, BadRequestError\n"
        "from anthropic import Anthropic\n"
        "oa = OpenAI(base_url=PROVIDER_URL + '/v1', api_key='sk-proxy-SECRET', max_retries=0)\n"
        "aoa = AsyncOpenAI(base_url=PROVIDER_URL + '/v1', api_key='sk-proxy-SECRET', max_retries=0)\n"
        "an = Anthropic(base_url=PROVIDER_URL, api_key='sk-ant-proxy', max_retries=0)\n"
        "MSG = [{'role': 'user', 'content': 'Give me three budget tips.'}]\n"
        "def chat(client=None, **kw):\n"
        "    return (client or oa).chat.completions.create(model='gpt-4o-mini', messages=MSG, **kw)\n",
    )


def events(sb: Any, ids: set[str]) -> list[dict[str, Any]]:
    return [e for e in sb.events() if e["provider_response_id"] in ids]


def test_proxied_call_gets_payi_result_and_is_never_ingested(shell: InteractiveShell, sandbox_env: Any) -> None:
    ok(shell, "%%payi --proxy --use-case tips --user ana\nr = chat()\n")
    r = shell.user_ns["r"]
    result = r.model_extra["xproxy_result"]
    assert result["cost"]["total"]["base"] > 0, "the caller still sees Pay-i's xproxy_result"
    row = rows().iloc[0]
    assert row["mode"] == "proxy" and row.status == "proxied"
    assert row.payi_cost_usd == pytest.approx(result["cost"]["total"]["base"])
    assert row.payi_request_id == result["request_id"] and row.cost_source == "payi"
    assert row.input_tokens == r.usage.prompt_tokens
    assert pn.last_result()["request_id"] == result["request_id"]
    assert pn.flush(15).sent == 0, "a proxied call is never ingested"
    (event,) = events(sandbox_env, {r.id})
    assert event["source"] == "proxy" and event["context"]["use_case_name"] == "tips"
    assert event["context"]["user_id"] == "ana"


def test_streams_async_and_anthropic_through_the_proxy(shell: InteractiveShell, sandbox_env: Any) -> None:
    ok(
        shell,
        "%%payi --proxy\n"
        "chunks = list(chat(stream=True))\n"
        "ar = await chat(aoa)\n"
        "m = an.messages.create(model='claude-haiku-4-5', max_tokens=60, messages=MSG)\n"
        "with an.messages.stream(model='claude-haiku-4-5', max_tokens=60, messages=MSG) as s:\n"
        "    sm = s.get_final_message()\n",
    )
    chunks = shell.user_ns["chunks"]
    assert all(c.choices for c in chunks), "the usage chunk the caller did not ask for stays hidden"
    df = rows()
    assert list(df.status) == ["proxied"] * 4 and all(df.payi_cost_usd > 0)
    assert df.iloc[0].streaming and df.iloc[0].output_tokens > 0
    assert df.iloc[2].output_tokens == shell.user_ns["m"].usage.output_tokens
    assert df.iloc[3].output_tokens == shell.user_ns["sm"].usage.output_tokens
    ids = {chunks[0].id, shell.user_ns["ar"].id, shell.user_ns["m"].id, shell.user_ns["sm"].id}
    assert {e["source"] for e in events(sandbox_env, ids)} == {"proxy"} and len(events(sandbox_env, ids)) == 4


def test_every_mode_switch_routes_through_the_proxy(shell: InteractiveShell) -> None:
    ok(shell, "%payi mode proxy")
    ok(shell, "%%payi\nr1 = chat()\n")
    ok(shell, "%payi mode telemetry")
    ok(shell, "%%payi\nr2 = chat()\n")
    ok(shell, "@pn.proxy\ndef ask():\n    return chat()\nr3 = ask()\n")
    ok(shell, "with pn.track(proxy=True):\n    r4 = chat()\n")
    ok(shell, "pn.configure(mode='proxy')\nwith pn.track():\n    r5 = chat()\npn.configure(mode='telemetry')\n")
    ok(shell, "@pn.ingest\ndef ask_direct():\n    return chat()\nr6 = ask_direct()\n")
    assert list(rows()["mode"]) == ["proxy", "telemetry", "proxy", "proxy", "proxy", "telemetry"]


def test_exactly_one_pay_i_event_per_call_in_any_mix(shell: InteractiveShell, sandbox_env: Any) -> None:
    ok(
        shell,
        "manual = OpenAI(base_url=pn.openai_url(), api_key='sk-proxy-SECRET', max_retries=0,\n"
        "                default_headers={**pn.proxy_headers(user_id='manual'), 'xProxy-Provider-BaseUri': PROVIDER_URL})\n"
        "ids = []\n",
    )
    ok(
        shell,
        "%%payi --use-case mix\n"
        "ids.append(chat().id)\n"
        "with pn.track(proxy=True):\n"
        "    ids.append(chat().id)\n"
        "    with pn.track(proxy=False, user_id='inner'):\n"
        "        ids.append(chat().id)\n"
        "    ids.append(manual.chat.completions.create(model='gpt-4o-mini', messages=MSG).id)\n"
        "ids.append(manual.chat.completions.create(model='gpt-4o-mini', messages=MSG).id)\n"
        "ids.append(list(chat(stream=True))[0].id)\n",
    )
    ok(shell, "%%payi --proxy\nids.append(chat().id)\nids.append(manual.chat.completions.create(model='gpt-4o-mini', messages=MSG).id)\n")
    pn.flush(15)
    ids = shell.user_ns["ids"]
    df = rows()
    assert len(df) == 8 and set(ids) <= set(df.provider_response_id)
    sent = {e["provider_response_id"]: e["source"] for e in events(sandbox_env, set(df.provider_response_id))}
    assert len(sent) == 8 and len(events(sandbox_env, set(df.provider_response_id))) == 8
    manual_rows = df[df.user_id == "manual"]
    assert len(manual_rows) == 3 and set(manual_rows["mode"]) == {"proxy"} and set(manual_rows.status) == {"proxied"}
    assert all(sent[i] == "proxy" for i in manual_rows.provider_response_id)
    assert (df["mode"] == "telemetry").sum() == 3 and (df.status == "sent").sum() == 3


def test_a_block_limit_refuses_the_call_and_the_cell_says_why(shell: InteractiveShell, sandbox_env: Any) -> None:
    limit = pn.limits.create("tiny-block", 0.0001, type="block")
    shell.user_ns["LIMIT"] = limit.limit_id
    outcomes = []
    for _ in range(6):
        with capture_output() as out:
            result = run(shell, "%%payi --proxy --limit $LIMIT\nchat()\n".replace("$LIMIT", limit.limit_id))
        outcomes.append((type(result.error_in_exec).__name__ if result.error_in_exec else "ok", out.stdout))
        if result.error_in_exec:
            break
    kinds = [k for k, _ in outcomes]
    assert kinds[-1] == "BadRequestError" and set(kinds[:-1]) == {"ok"}, kinds
    message = outcomes[-1][1]
    assert "tiny-block" in message and "blocked" in message and "max" in message
    df = rows()
    blocked = df[df.status == "blocked"]
    assert len(blocked) == 1 and blocked.iloc[0].payi_cost_usd == 0 and blocked.iloc[0].limit_states == {limit.limit_id: "blocked"}
    assert limit.limit_id in blocked.iloc[0].error
    assert df[df.status == "proxied"].payi_cost_usd.gt(0).all()
    before = len(sandbox_env.emulator.state.requests)
    stream = run(shell, f"%%payi --proxy --limit {limit.limit_id}\nfor c in chat(stream=True):\n    pass\n")
    assert type(stream.error_in_exec).__name__ == "BadRequestError", "a blocked stream fails before any token"
    assert len(sandbox_env.emulator.state.requests) == before, "a blocked call never reaches the provider"


def test_an_allow_limit_past_its_max_lets_calls_through(shell: InteractiveShell) -> None:
    limit = pn.limits.create("soft-allow", 0.0001, type="allow")
    for _ in range(5):
        ok(shell, f"%%payi --proxy --limit {limit.limit_id}\nchat()\n")
    states = [s[limit.limit_id] for s in rows().limit_states]
    assert states[-1] == "overrun" and "ok" in states
    assert pn.limits.get(limit.limit_id).state == "overrun"


def test_pay_i_refusing_the_proxy_call_is_explained(shell: InteractiveShell, sandbox_env: Any) -> None:
    sandbox_env.inject_fault(route="proxy", status=503, count=1)
    with capture_output() as out:
        result = run(shell, "%%payi --proxy\nchat()\n")
    assert type(result.error_in_exec).__name__ == "InternalServerError"
    assert "Pay-i proxy" in out.stdout and "503" in out.stdout
    assert rows().iloc[-1].status == "failed"

    get_session().configure(api_key="wrong-key-for-this-test")
    with capture_output() as out:
        result = run(shell, "%%payi --proxy\nchat()\n")
    assert type(result.error_in_exec).__name__ == "AuthenticationError"
    assert "invalid_api_key" in out.stdout and "PAYI_API_KEY" in out.stdout


def test_limits_api_and_magic(shell: InteractiveShell) -> None:
    created = pn.limits.create("team-q4", 0.05, type="block", threshold=0.8)
    table = ok(shell, "%payi limits")
    assert created.limit_id in set(table.limit_id) and table.set_index("limit_id").loc[created.limit_id, "max"] == 0.05
    assert pn.limits.update(created.limit_id, max=0.5).max == 0.5
    assert pn.limits.reset(created.limit_id).spent == 0
    for bad in (lambda: pn.limits.create("x", -1), lambda: pn.limits.create("x", 1, type="soft"), lambda: pn.limits.get("nope")):
        with pytest.raises(pn.LimitError):
            bad()
    pn.limits.delete(created.limit_id)
    assert created.limit_id not in set(pn.limits.list().limit_id)


def test_the_sandbox_is_told_where_a_public_provider_is() -> None:
    """Pay-i assumes the public host without xProxy-Provider-BaseUri; the sandbox assumes its emulator."""
    import httpx2

    from payi_notebook.capture import ProxyTarget, RouteTable
    from payi_notebook.capture.proxying import rewrite_to_proxy
    from payi_notebook.context import Context

    routes = RouteTable({}, "http://127.0.0.1:9")
    for always, expected in ((True, "https://api.openai.com"), (False, None)):
        request = httpx2.Request("POST", "https://api.openai.com/v1/chat/completions", json={"model": "m"})
        route = routes.match("https", "api.openai.com", None, "/v1/chat/completions")
        rewrite_to_proxy(request, route, ProxyTarget("http://127.0.0.1:9", Secret("k"), always_base_uri=always), Context())
        assert str(request.url) == "http://127.0.0.1:9/api/v1/proxy/openai/v1/chat/completions"
        assert request.headers.get("xProxy-Provider-BaseUri") == expected
        assert request.headers["host"] == "127.0.0.1:9" and request.headers["xProxy-api-key"] == "k"
