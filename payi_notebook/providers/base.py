"""What every provider module declares, and the adapter base class.

A provider module says where its API lives (``Provider``: public base URLs, host wildcards
allowed, and the Pay-i category and proxy prefix) and which paths under a base are calls
(``Endpoint``: a path template such as ``/{version}/models/{model}:generateContent`` and the
adapter that reads it). Adapters see the parsed request body once, each JSON response, or
each server-sent event of a stream as it passes; they accumulate into an ``Observation``
and may ask for an event to be hidden from the caller (the usage chunk we requested on the
caller's behalf). Events are only JSON-decoded when they can carry something we need,
which keeps the per-event cost of the tee small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .. import xproxy
from .sse import SSEEvent


@dataclass(slots=True)
class Observation:
    """What one exchange revealed so far."""

    usage: dict[str, Any] | None = None
    response_id: str | None = None
    model: str | None = None
    xproxy_result: dict[str, Any] | None = None
    xproxy_error: dict[str, Any] | None = None
    error: str | None = None
    deltas: int = 0  # content events seen (a lower bound on output tokens when usage never came)
    complete: bool = False  # the terminal event (with final usage) arrived
    chunks: list[str] | None = None  # event payloads kept for prompt/response logging
    last: str | None = None  # the latest event that may carry usage, decoded only when the call is built


def loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def read_error(obs: Observation, body: Any) -> None:
    """Provider or Pay-i error bodies: keep the message, the Pay-i error and result."""
    if not isinstance(body, dict):
        return
    if (result := xproxy.of_body(body)) is not None:
        obs.xproxy_result = result
    if isinstance(body.get("xproxy_error"), dict):
        obs.xproxy_error = body["xproxy_error"]
    err = body.get("error")
    if isinstance(err, dict) and err.get("message"):
        obs.error = str(err["message"])
    elif isinstance(err, str):
        obs.error = err
    elif obs.xproxy_error and obs.xproxy_error.get("message"):
        obs.error = str(obs.xproxy_error["message"])
    elif body.get("message"):
        obs.error = str(body["message"])


class ApiAdapter:
    """Base adapter. Subclasses set the class attributes and override the readers.

    ``wire`` names the usage format (``units.units_for``); ``resource_prefix`` is what Pay-i
    puts before the model (``google.``, ``anthropic.`` on Vertex); with ``response_model`` the
    model the response names is the resource (Azure deployments, Gemini model versions),
    otherwise the model the request named.
    """

    wire: str = "openai"
    resource_prefix: str = ""
    response_model: bool = False

    def resource(self, requested: str | None, answered: str | None) -> str | None:
        """The Pay-i resource (what is priced): the requested or the answered model, prefixed."""
        model = (answered or requested) if self.response_model else (requested or answered)
        return self.resource_prefix + model if model else None

    def read_headers(self, obs: Observation, headers: Any) -> None:
        """The response headers (a mapping, or pairs read back from the journal); Bedrock's carry usage."""

    def prepare(self, body: dict[str, Any]) -> bool:
        """Adjust the outgoing body in place; True when it was changed (and events may be hidden)."""
        return False

    def read_json(self, obs: Observation, data: Any) -> None:
        """A complete JSON response body."""
        if not isinstance(data, dict):
            return
        obs.response_id = data.get("id") or obs.response_id
        obs.model = data.get("model") or obs.model
        if isinstance(data.get("usage"), dict):
            obs.usage = data["usage"]
            obs.complete = True
        if (result := xproxy.of_body(data)) is not None:
            obs.xproxy_result = result

    def read_event(self, obs: Observation, event: SSEEvent, hiding: bool, now: float) -> bool:
        """One stream event; return False to keep it from the caller."""
        return True

    def settle(self, obs: Observation) -> None:
        """The call is over: decode what ``read_event`` put aside (``obs.last``)."""

    def may_hide(self, raw: bytes) -> bool:
        """Whether ``read_event`` might drop this raw event (then it is read before it is passed on)."""
        return False

    @staticmethod
    def _proxy_result(obs: Observation, data: str, parsed: Any = None) -> None:
        if "xproxy_result" in data:
            parsed = parsed if parsed is not None else loads(data)
            if (result := xproxy.of_body(parsed)) is not None:
                obs.xproxy_result = result


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One call path under a provider base: ``template`` with ``{name}`` segments.

    ``proxy``: Pay-i has a proxy route for this path (else proxy mode sends it direct and
    ingests it). ``stream``: the path itself asks for a stream (Google's ``:stream*``,
    Bedrock's ``converse-stream``).
    """

    template: str
    operation: str
    adapter: type[ApiAdapter]
    proxy: bool = True
    stream: bool = False


@dataclass(frozen=True, slots=True)
class Provider:
    """A provider API as capture sees it; a module's ``PROVIDER``.

    ``bases``: public base URLs as users give them to the SDK (``*`` matches one host label
    part). ``public_base``: the base Pay-i assumes when ``xProxy-Provider-BaseUri`` is absent
    (None: always send it). ``optional_prefix``: a path segment a gateway base may leave out
    (OpenAI's ``/v1``). ``version_in_base``: a base URL may end in the API version that the
    templates spell as ``{version}`` (Vertex's ``…/v1``). ``price_as_resource``: the proxy
    route requires ``xProxy-PriceAs-Resource``.
    """

    name: str
    category: str
    bases: tuple[str, ...]
    endpoints: tuple[Endpoint, ...]
    proxy_prefix: str | None = None
    public_base: str | None = None
    optional_prefix: str = ""
    version_in_base: bool = False
    price_as_resource: bool = False
