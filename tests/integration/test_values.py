"""Values that used to break the session (issue 8, items 9-13, 18, 21), each in a real IPython
shell with the real OpenAI SDK against the emulator and telemetry into the sandbox."""

from __future__ import annotations

import json
import math
import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import payi_notebook as pn
from payi_notebook.client import PayiClient
from payi_notebook.session import get_session

from support.shells import loaded_shell, ok, rows, run

pytestmark = pytest.mark.timeout(180)

CALL = "r = oa.chat.completions.create(model='gpt-4o-mini', messages=MSG)\n"


@pytest.fixture
def shell(sandbox_env: Any) -> Iterator[InteractiveShell]:
    yield from loaded_shell(
        sandbox_env,
        "from openai import OpenAI\n"
        "oa = OpenAI(base_url=PROVIDER_URL + '/v1', api_key='sk-values', max_retries=0)\n"
        "MSG = [{'role': 'user', 'content': 'Say hi.'}]\n",
    )


def refused(ip: InteractiveShell, code: str) -> str:
    """Run a cell that must be refused with a UsageError before its body runs; return the message."""
    ip.user_ns.pop("r", None)
    with capture_output() as captured:
        result = run(ip, code)
    error = result.error_before_exec or result.error_in_exec
    assert error is not None, f"cell was not refused: {code!r}"
    assert type(error).__name__ == "UsageError", f"{type(error).__name__}: {error}"
    message = str(error)
    assert "\n" not in message and message, message
    assert "r" not in ip.user_ns, "the cell body ran"
    assert "Traceback" not in captured.stdout
    return message


def sent_context(sandbox: Any, response_id: str) -> dict[str, Any]:
    pn.flush(30)
    stored = [e for e in sandbox.events() if e["provider_response_id"] == response_id]
    assert len(stored) == 1
    return stored[0]["context"]


# -- item 9: use case version --------------------------------------------------------------------


def test_use_case_version_is_refused_outside_pay_is_int32_range(shell: InteractiveShell, sandbox_env: Any) -> None:
    for bad in ("99999999999999999999", "2147483648", "0", "-1", "1.5", "²"):
        message = refused(shell, f"%%payi --use-case v --use-case-version {bad}\n{CALL}")
        assert "use case version must be an integer from 1 to 2147483647" in message
    with pytest.raises(pn.ContextError, match="from 1 to 2147483647"):
        pn.track(use_case_name="v", use_case_version=2**31)
    ok(shell, f"%%payi --use-case v --use-case-version 2147483647\n{CALL}")
    assert rows().use_case_version.iloc[-1] == 2147483647
    assert sent_context(sandbox_env, shell.user_ns["r"].id)["use_case_version"] == 2147483647


def test_a_row_that_cannot_be_stored_never_makes_the_ledger_unreadable(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    from payi_notebook.context import Context
    from payi_notebook.events import UsageEvent

    ok(shell, f"%%payi --use-case fine\n{CALL}")
    # what a bug elsewhere could hand the ledger: a context no validation saw
    bad = UsageEvent(provider="openai", category="system.openai", operation="chat",
                     context=Context(use_case_name="x", use_case_version=10**20))
    pn.ledger().append(bad)
    ok(shell, f"%%payi --use-case fine\n{CALL}")
    df = ok(shell, "%payi df")
    assert len(df) == 3 and list(df.status.iloc[[0, 2]]) != ["failed", "failed"]
    assert df.status.iloc[1] == "failed" and "use_case_version is out of range" in df.error.iloc[1]
    pn.ledger().to_csv(tmp_path / "ledger.csv")
    pn.ledger().to_parquet(tmp_path / "ledger.parquet")
    assert len(pn.ledger().df) == 3


# -- item 10: quoting and strict subcommands -------------------------------------------------------


def test_options_are_quoted_like_a_shell_and_expand_inside_one_word(shell: InteractiveShell, sandbox_env: Any) -> None:
    shell.user_ns.update(who="bo jones", note="from a variable")
    ok(shell, f"%%payi --use-case q --user \"ana smith\" --account 'acme corp' --prop note=\"hello world\"\n{CALL}")
    row = rows().iloc[-1]
    assert (row.user_id, row.account_name, row.properties) == ("ana smith", "acme corp", {"note": "hello world"})
    context = sent_context(sandbox_env, shell.user_ns["r"].id)
    assert context["user_id"] == "ana smith" and context["account_name"] == "acme corp"

    ok(shell, f"%%payi --use-case q --user {{who}} --prop n=$note --prop k={{'a b'.upper()}}\n{CALL}")
    row = rows().iloc[-1]
    assert row.user_id == "bo jones" and row.properties == {"n": "from a variable", "k": "A B"}
    shell.user_ns["OPTS"] = "--user 'cy d' --prop team=ml"  # a whole-word expansion starting with - holds options
    ok(shell, f"%%payi --use-case q $OPTS\n{CALL}")
    row = rows().iloc[-1]
    assert row.user_id == "cy d" and row.properties == {"team": "ml"}
    ok(shell, "%payi on --user {who}")
    ok(shell, CALL)
    assert rows().user_id.iloc[-1] == "bo jones"
    ok(shell, "%payi off")


def test_bad_lines_are_one_line_usage_errors(shell: InteractiveShell) -> None:
    assert "close the quote" in refused(shell, "%payi 'unclosed")
    assert "close the quote" in refused(shell, f"%%payi --user 'ana\n{CALL}")
    assert "exclude each other" in refused(shell, f"%%payi --proxy --telemetry\n{CALL}")
    assert "is None" in refused(shell, f"%%payi --use-case {{None}}\n{CALL}")
    shell.user_ns["nothing"] = None
    assert "$nothing is None" in refused(shell, f"%%payi --user $nothing\n{CALL}")
    assert "ZeroDivisionError" in refused(shell, f"%%payi --user {{1/0}}\n{CALL}")
    assert "at most 256" in refused(shell, f"%%payi --use-case ok --user {'u' * 257}\n{CALL}")
    assert "at most 256" in refused(shell, f"%%payi --limit {'l' * 300}\n{CALL}")
    assert "1-64 characters" in refused(shell, f"%%payi --use-case {'n' * 65}\n{CALL}")
    assert len(rows()) == 0


@pytest.mark.parametrize("command", ["status", "df", "result", "off", "reset", "limits", "sandbox", "budget"])
def test_subcommands_refuse_extra_words(shell: InteractiveShell, command: str) -> None:
    assert "takes no arguments" in refused(shell, f"%payi {command} extra")


def test_subcommands_with_arguments_refuse_extra_words(shell: InteractiveShell) -> None:
    assert "usage: %payi flush" in refused(shell, "%payi flush 5 extra")
    assert "usage: %payi mode" in refused(shell, "%payi mode proxy extra")
    assert "usage: %payi provider" in refused(shell, "%payi provider list extra")


# -- item 11: timeouts -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, "5", None, True])
def test_flush_refuses_timeouts_that_would_hang_or_make_no_sense(sandbox_env: Any, value: Any) -> None:
    with pytest.raises(ValueError, match="number of seconds") as raised:
        pn.flush(value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("word", ["nan", "inf", "-3", "soon"])
def test_payi_flush_refuses_bad_timeouts(shell: InteractiveShell, word: str) -> None:
    assert "%payi flush takes a timeout in seconds" in refused(shell, f"%payi flush {word}")


@pytest.mark.parametrize("value", [math.inf, math.nan, -1, "5"])
def test_exit_timeout_must_be_finite(sandbox_env: Any, value: Any) -> None:
    with pytest.raises(ValueError, match="exit_timeout"):
        pn.configure(exit_timeout=value)
    assert get_session().settings.exit_timeout == 5.0


# -- item 12: one rule for a limit's max -----------------------------------------------------------


@pytest.mark.parametrize(("value", "accepted"), [(0, False), (-1, False), (math.nan, False), (0.0001, True)])
def test_the_client_and_pn_limits_share_pay_is_max_rule(sandbox_env: Any, value: float, accepted: bool) -> None:
    session = get_session().start()
    name = f"max-{uuid.uuid4().hex[:8]}"
    with PayiClient(session.endpoint.base_url, sandbox_env.api_key) as client:
        if accepted:
            assert client.create_limit(name + "-c", value)["limit"]["max"] == value
        else:
            with pytest.raises(ValueError, match="max must be"):
                client.create_limit(name + "-c", value)
            with pytest.raises(ValueError, match="max must be"):
                client.update_limit("any", max=value)
    if accepted:
        assert pn.limits.create(name, value).max == value
    else:
        with pytest.raises(pn.LimitError, match="max must be"):
            pn.limits.create(name, value)
        # the sandbox draws the same line (Pay-i's invalid_max_limit), for what the client lets through
        answer = httpx.post(f"{session.endpoint.base_url}/api/v1/limits", headers={"xProxy-api-key": sandbox_env.api_key},
                            content=json.dumps({"limit_name": name, "max": value}), timeout=30)
        assert answer.status_code == 400
        assert answer.json()["xproxy_error"]["code"] == ("invalid_max_limit" if math.isfinite(value) else "invalid_json")


# -- item 18: a limit's name works where an id is expected -----------------------------------------


def test_a_limit_name_works_wherever_an_id_is_expected(shell: InteractiveShell, sandbox_env: Any) -> None:
    name = f"team-{uuid.uuid4().hex[:6]}"
    created = pn.limits.create(name, 5.0, type="allow", threshold=0.8)
    assert created.limit_id != name  # Pay-i picked the id
    ok(shell, f"%%payi --use-case named --limit {name}\n{CALL}")
    assert list(rows().limit_ids.iloc[-1]) == [created.limit_id]
    assert sent_context(sandbox_env, shell.user_ns["r"].id)["limit_ids"] == [created.limit_id]
    with pn.track(limit_ids=[name, created.limit_id]) as scope:
        assert scope.context.limit_ids == (created.limit_id,)
    assert pn.proxy_headers(limit_ids=[name])["xProxy-Limit-IDs"] == created.limit_id
    assert pn.limits.get(name).limit_id == created.limit_id
    assert pn.limits.update(name, max=6.0).max == 6.0
    assert "unknown limit 'no-such-limit'" in refused(shell, f"%%payi --limit no-such-limit\n{CALL}")
    with pytest.raises(pn.ContextError, match="unknown limit 'nope'"):
        pn.track(limit_ids=["nope"])
    pn.limits.delete(name)
    with pytest.raises(pn.LimitError, match="unknown limit"):
        pn.limits.get(name)


# -- item 21: the key ------------------------------------------------------------------------------


def test_the_key_shows_nowhere_in_settings_or_endpoint(sandbox_env: Any) -> None:
    session = get_session().start()
    key = sandbox_env.api_key
    for holder in (session.settings, session.endpoint, session.flusher):
        assert key not in repr(vars(holder) if hasattr(holder, "__dict__") else holder)
        assert key not in str(holder) and key not in repr(holder)
    assert key not in repr(vars(session.settings)) and key not in str(session.settings._trait_values)
    assert session.settings.api_key == key  # it is the key, just never shown
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(session.settings.api_key)
    with pytest.raises(ValueError) as bad:
        pn.configure(api_key="has a space")
    assert "has a space" not in str(bad.value)


def test_masking_replaces_the_key_only_as_a_whole_token() -> None:
    from payi_notebook.secret import Secret

    secret = Secret("k")
    assert secret.mask("unknown limit ID(s): k, kk, key=k.") == "unknown limit ID(s): ***, kk, key=***."
    long = Secret("sk-abc123")
    assert long.mask("Bearer sk-abc123 was refused; xsk-abc123y is not it") == "Bearer *** was refused; xsk-abc123y is not it"


# -- item 13: one owner per setting: each runtime change shows on the wire ------------------------


def _last_event(sandbox: Any, response_id: str) -> dict[str, Any]:
    pn.flush(30)
    found = [e for e in sandbox.events() if e["provider_response_id"] == response_id]
    assert len(found) == 1, found
    return found[0]


def test_each_runtime_setting_changed_shows_on_the_wire(shell: InteractiveShell, sandbox_env: Any) -> None:
    session = get_session()

    def call(line: str = "%%payi --use-case wire") -> dict[str, Any]:
        ok(shell, f"{line}\n{CALL}")
        return _last_event(sandbox_env, shell.user_ns["r"].id)

    # log_prompt_and_response: off, then on again, through both doors
    for configure, logged in (
        ("pn.configure(log_prompt_and_response=False)", False),
        ("pn.configure(log_prompt_and_response=True)", True),
        ("%config PayiMagics.log_prompt_and_response = False", False),
        ("%config PayiMagics.log_prompt_and_response = True", True),
    ):
        ok(shell, "import payi_notebook as pn\n" + configure)
        event = call()
        assert bool(event["context"].get("logging_disabled")) is not logged, configure
        assert ("provider_request_json" in event["received"]) is logged, configure

    # mode: pn.configure, then %config after it (the magics' view must not be stale), then %payi mode
    for configure, source in (
        ("pn.configure(mode='proxy')", "proxy"),
        ("%config PayiMagics.mode = 'telemetry'", "ingest"),
        ("%payi mode proxy", "proxy"),
        ("pn.configure(mode='telemetry')", "ingest"),
    ):
        ok(shell, "import payi_notebook as pn\n" + configure)
        assert shell.find_magic("payi").__self__.mode == session.settings.mode
        assert call()["source"] == source, configure

    # providers: a base URL added at runtime is captured at once
    alias = sandbox_env.provider_url.replace("127.0.0.1", "localhost")
    shell.user_ns["alias"] = alias
    ok(shell, "oa2 = OpenAI(base_url=alias + '/v1', api_key='sk-values', max_retries=0)")
    ok(shell, "%%payi\nr = oa2.chat.completions.create(model='gpt-4o-mini', messages=MSG)")
    assert shell.user_ns["r"].id not in set(rows().provider_response_id), "not yet a known provider URL"
    ok(shell, "pn.configure(providers={'openai': [alias + '/v1']})")
    ok(shell, "%%payi\nr = oa2.chat.completions.create(model='gpt-4o-mini', messages=MSG)")
    assert _last_event(sandbox_env, shell.user_ns["r"].id)["source"] == "ingest"

    # quiet: the summary line under the cell goes and comes back
    for value, shown in ((True, False), (False, True)):
        ok(shell, f"pn.configure(quiet={value})")
        with capture_output() as captured:
            ok(shell, f"%%payi --use-case wire\n{CALL}")
        assert bool(captured.outputs or captured.stdout.strip()) is shown

    # exit_timeout: the sender waits at exit for what the settings say now, not a copy
    ok(shell, "pn.configure(exit_timeout=1.5)")
    assert session.flusher is not None and session.flusher.settings is session.settings
    assert session.flusher.settings.exit_timeout == 1.5

    # base_url + api_key: the next call goes to the other Pay-i (another sandbox here)
    from payi_notebook import sandbox as sandbox_mod

    with sandbox_mod.start() as other:
        shell.user_ns["other"] = other
        ok(shell, "pn.configure(base_url=other.base_url, api_key=other.api_key)")
        ok(shell, f"%%payi --use-case wire\n{CALL}")
        pn.flush(30)
        assert [e["source"] for e in other.events() if e["provider_response_id"] == shell.user_ns["r"].id] == ["ingest"]
        assert all(e["provider_response_id"] != shell.user_ns["r"].id for e in sandbox_env.events())
        ok(shell, "pn.configure(base_url=PAYI_URL, api_key=PAYI_KEY)".replace("PAYI_URL", repr(sandbox_env.base_url))
           .replace("PAYI_KEY", repr(sandbox_env.api_key)))


def test_limit_names_and_ids_are_capped_everywhere(sandbox_env: Any) -> None:
    session = get_session().start()
    with pytest.raises(pn.LimitError, match="at most 256"):
        pn.limits.create("n" * 10_000, 1.0)
    with PayiClient(session.endpoint.base_url, sandbox_env.api_key) as client:
        with pytest.raises(ValueError, match="at most 256"):
            client.create_limit("n" * 10_000, 1.0)
    answer = httpx.post(f"{session.endpoint.base_url}/api/v1/limits", headers={"xProxy-api-key": sandbox_env.api_key},
                        json={"limit_name": "n" * 10_000, "max": 1.0}, timeout=30)
    assert answer.status_code == 400 and "at most 256" in answer.json()["message"]
    with pytest.raises(pn.ContextError, match="at most 256"):
        pn.track(limit_ids=["l" * 10_000])
