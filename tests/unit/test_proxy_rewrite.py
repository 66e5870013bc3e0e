"""The proxy rewrite on real httpx2 requests: the URL Pay-i's proxy route gets per provider, the
headers added (key, base URI, context) and the caller's own headers winning; and which response
headers never leave capture (secrets, framing)."""

from __future__ import annotations

import httpx2
import pytest
from botocore.compat import HTTPHeaders

from payi_notebook.capture.proxying import ProxyTarget, add_proxy_headers, proxy_url, proxyable, rewrite_to_proxy
from payi_notebook.capture.routes import RouteTable
from payi_notebook.context import Context, derive
from payi_notebook.redact import is_secret, response_headers
from payi_notebook.secret import Secret

PAYI = ProxyTarget("https://api.pay-i.com", Secret("payi-key-SECRET"))
TABLE = RouteTable()
CONTEXT = derive(Context(), use_case_name="summarize", use_case_id="uc-1", user_id="ana", limit_ids=["team-q4"])


def rewritten(url: str, headers: dict[str, str] | None = None, target: ProxyTarget = PAYI, model: str | None = None):
    request = httpx2.Request("POST", url, headers=headers or {}, json={"model": "m"})
    parts = request.url
    route = TABLE.match(parts.scheme, parts.host, parts.port, parts.raw_path.decode().split("?")[0])
    assert route is not None and proxyable(route)
    context = rewrite_to_proxy(request, route, target, CONTEXT, model)
    return request, context


@pytest.mark.parametrize(
    ("url", "proxied"),
    [
        ("https://api.openai.com/v1/chat/completions", "https://api.pay-i.com/api/v1/proxy/openai/v1/chat/completions"),
        ("https://api.anthropic.com/v1/messages", "https://api.pay-i.com/api/v1/proxy/anthropic/v1/messages"),
        (
            "https://res.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21",
            "https://api.pay-i.com/api/v1/proxy/azure.openai/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21",
        ),
        (
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse",
            "https://api.pay-i.com/api/v1/proxy/aws.bedrock/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse",
        ),
    ],
)
def test_the_url_moves_to_the_proxy_route_keeping_path_and_query(url: str, proxied: str) -> None:
    request, _ = rewritten(url)
    assert str(request.url) == proxied
    assert request.headers["host"] == "api.pay-i.com"


def test_pay_is_key_and_the_context_are_added_and_the_providers_credential_passes() -> None:
    request, context = rewritten("https://api.openai.com/v1/chat/completions", {"Authorization": "Bearer sk-user"})
    headers = request.headers
    assert headers["xproxy-api-key"] == "payi-key-SECRET"
    assert headers["authorization"] == "Bearer sk-user"  # Pay-i forwards it to the provider
    assert headers["xproxy-usecase-name"] == "summarize" and headers["xproxy-user-id"] == "ana"
    assert headers["xproxy-limit-ids"] == "team-q4"
    assert "xproxy-provider-baseuri" not in headers  # the public host is Pay-i's default
    assert context is CONTEXT


def test_a_non_public_base_is_named_and_a_sandbox_target_always_names_it() -> None:
    request, _ = rewritten("https://res.openai.azure.com/openai/deployments/d/chat/completions")
    assert request.headers["xproxy-provider-baseuri"] == "https://res.openai.azure.com"
    sandbox = ProxyTarget("http://127.0.0.1:5000", Secret("k"), always_base_uri=True)
    request, _ = rewritten("https://api.openai.com/v1/chat/completions", target=sandbox)
    assert str(request.url).startswith("http://127.0.0.1:5000/api/v1/proxy/openai/v1/")
    assert request.headers["xproxy-provider-baseuri"] == "https://api.openai.com"


def test_the_callers_headers_win_and_an_empty_one_clears_its_field() -> None:
    given = {"xProxy-User-ID": "bo", "xProxy-Limit-IDs": "", "xProxy-UseCase-Name": "mine"}
    request, context = rewritten("https://api.openai.com/v1/chat/completions", given)
    assert request.headers["xproxy-user-id"] == "bo"
    assert "xproxy-limit-ids" not in request.headers
    assert request.headers["xproxy-usecase-name"] == "mine" and "xproxy-usecase-id" not in request.headers
    assert (context.user_id, context.limit_ids, context.use_case_name, context.use_case_id) == ("bo", (), "mine", None)


def test_one_pay_i_key_only_even_when_the_caller_sent_one() -> None:
    headers = HTTPHeaders()  # botocore's: setting a header appends another
    headers["xProxy-api-key"] = "stale"
    route = TABLE.match("https", "bedrock-runtime.us-east-1.amazonaws.com", None, "/model/m/converse")
    assert route is not None
    add_proxy_headers(headers, route, PAYI, Context())
    assert headers.get_all("xproxy-api-key") == ["payi-key-SECRET"]


def test_the_key_stays_out_of_the_targets_repr() -> None:
    assert "SECRET" not in repr(PAYI) and "SECRET" not in str(PAYI)


def test_routes_without_a_pay_i_proxy_route_are_not_proxyable() -> None:
    gemini = TABLE.match("https", "generativelanguage.googleapis.com", None, "/v1beta/models/gemini-2.0-flash:generateContent")
    assert gemini is not None and not proxyable(gemini)
    with pytest.raises(ValueError, match="no proxy route"):
        proxy_url("https://api.pay-i.com", "google")
    assert proxy_url("https://api.pay-i.com/", "openai") == "https://api.pay-i.com/api/v1/proxy/openai/v1"


@pytest.mark.parametrize(
    "name",
    ["Authorization", "api-key", "x-api-key", "x-goog-api-key", "Set-Cookie", "X-Amz-Security-Token", "proxy-authorization"],
)
def test_credential_headers_are_secret(name: str) -> None:
    assert is_secret(name)


def test_kept_response_headers_drop_secrets_and_framing() -> None:
    kept = response_headers(
        [
            ("x-request-id", "req_1"),
            ("anthropic-ratelimit-requests-remaining", "49"),
            ("set-cookie", "__cf_bm=abc"),
            ("x-api-key", "sk-oops"),
            ("Transfer-Encoding", "chunked"),
            ("connection", "keep-alive"),
        ]
    )
    names = [h["name"].lower() for h in kept]
    assert names == ["x-request-id", "anthropic-ratelimit-requests-remaining"]
