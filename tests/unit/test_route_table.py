"""``RouteTable.match`` on its own: exact and wildcard hosts, ports, path templates (``:`` inside
and after parameters), gateway prefixes, Pay-i proxy routes, and what is not a provider call."""

from __future__ import annotations

import pytest

from payi_notebook.capture.routes import RouteTable

TABLE = RouteTable(
    extra={"openai": ["http://127.0.0.1:9000/v1", "https://gateway.example.com/llm"]},
    payi_base_url="https://api.pay-i.com",
)


def test_public_hosts_match_with_the_operation_and_base() -> None:
    route = TABLE.match("https", "api.openai.com", None, "/v1/chat/completions")
    assert route is not None
    assert (route.provider, route.operation, route.proxied) == ("openai", "chat", False)
    assert (route.base, route.path) == ("https://api.openai.com", "/chat/completions")  # /v1 is OpenAI's optional prefix
    anthropic = TABLE.match("https", "api.anthropic.com", None, "/v1/messages")
    assert anthropic is not None and (anthropic.provider, anthropic.operation) == ("anthropic", "messages")


def test_hosts_match_case_insensitively_and_the_default_port_is_the_same_origin() -> None:
    assert TABLE.match("https", "API.OpenAI.com", 443, "/v1/embeddings") is not None


@pytest.mark.parametrize(
    ("host", "provider"),
    [
        ("my-resource.openai.azure.com", "azure_openai"),
        ("eu-west.cognitiveservices.azure.com", "azure_openai"),
        ("bedrock-runtime.us-east-1.amazonaws.com", "bedrock"),
        ("bedrock-runtime-fips.us-gov-west-1.amazonaws.com", "bedrock"),
    ],
)
def test_wildcard_hosts_match_one_label(host: str, provider: str) -> None:
    path = "/openai/deployments/gpt4o/chat/completions" if provider == "azure_openai" else "/model/m/converse"
    route = TABLE.match("https", host, None, path)
    assert route is not None and route.provider == provider


@pytest.mark.parametrize(
    "host",
    [
        "a.b.openai.azure.com",  # a wildcard stands for one label, not several
        "openai.azure.com",
        "bedrock-runtime.us-east-1.amazonaws.com.evil.example",
        "api.openai.com.evil.example",
    ],
)
def test_hosts_that_only_resemble_a_provider_do_not_match(host: str) -> None:
    for path in ("/v1/chat/completions", "/openai/deployments/x/chat/completions", "/model/m/converse"):
        assert TABLE.match("https", host, None, path) is None


def test_scheme_and_port_are_part_of_the_origin() -> None:
    assert TABLE.match("http", "api.openai.com", None, "/v1/chat/completions") is None
    assert TABLE.match("https", "api.openai.com", 8443, "/v1/chat/completions") is None
    assert TABLE.match("http", "127.0.0.1", 9000, "/v1/chat/completions") is not None
    assert TABLE.match("http", "127.0.0.1", 9001, "/v1/chat/completions") is None


def test_template_parameters_are_captured_and_decoded() -> None:
    azure = TABLE.match("https", "r.openai.azure.com", None, "/openai/deployments/my-gpt4o/chat/completions")
    assert azure is not None and azure.params == {"deployment": "my-gpt4o"}
    arn = "arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fus.anthropic.claude-3-5-haiku-20241022-v1%3A0"
    bedrock = TABLE.match("https", "bedrock-runtime.us-east-1.amazonaws.com", None, f"/model/{arn}/converse-stream")
    assert bedrock is not None and bedrock.operation == "converse-stream"
    assert bedrock.params["model"].endswith("inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0")
    assert bedrock.path == f"/model/{arn}/converse-stream"  # matched and kept encoded, as signed


def test_a_colon_inside_a_parameter_belongs_to_it_unless_the_template_continues_with_one() -> None:
    bedrock = TABLE.match("https", "bedrock-runtime.us-west-2.amazonaws.com", None, "/model/anthropic.claude-v2:1/invoke")
    assert bedrock is not None and bedrock.params["model"] == "anthropic.claude-v2:1"
    gemini = TABLE.match(
        "https", "generativelanguage.googleapis.com", None, "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    )
    assert gemini is not None and gemini.params == {"version": "v1beta", "model": "gemini-2.0-flash"}
    assert gemini.operation == "generate" and gemini.endpoint is not None and gemini.endpoint.stream
    assert TABLE.match("https", "generativelanguage.googleapis.com", None, "/v1beta/models/gemini:unknownVerb") is None


def test_a_gateway_base_without_v1_still_matches_and_keeps_its_own_base() -> None:
    route = TABLE.match("https", "gateway.example.com", None, "/llm/v1/chat/completions")
    assert route is not None and route.base == "https://gateway.example.com/llm"
    assert route.path == "/chat/completions"
    assert TABLE.match("https", "gateway.example.com", None, "/other/v1/chat/completions") is None


def test_pay_i_proxy_routes_are_already_proxied_and_other_pay_i_paths_are_not_calls() -> None:
    route = TABLE.match("https", "api.pay-i.com", None, "/api/v1/proxy/openai/v1/chat/completions")
    assert route is not None and route.proxied and route.provider == "openai"
    anthropic = TABLE.match("https", "api.pay-i.com", None, "/api/v1/proxy/anthropic/v1/messages")
    assert anthropic is not None and anthropic.proxied and anthropic.provider == "anthropic"
    assert TABLE.match("https", "api.pay-i.com", None, "/api/v1/ingest") is None
    plain = RouteTable()
    assert plain.match("https", "api.pay-i.com", None, "/api/v1/proxy/openai/v1/chat/completions") is None


@pytest.mark.parametrize(
    "path",
    ["/v1/models", "/v1/chat/completions/extra", "/v1/chat", "/chat/completions", "/v2/messages", "/"],
)
def test_paths_that_are_not_a_priced_endpoint_do_not_match(path: str) -> None:
    assert TABLE.match("https", "api.openai.com", None, path) is None
    assert TABLE.match("https", "api.anthropic.com", None, path) is None


def test_a_repeated_url_returns_the_same_route_object() -> None:
    first = TABLE.match("https", "api.anthropic.com", None, "/v1/messages")
    assert first is not None and TABLE.match("https", "api.anthropic.com", None, "/v1/messages") is first
