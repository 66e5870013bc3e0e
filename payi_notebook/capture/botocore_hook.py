"""The hook on botocore's HTTP send, for boto3 Bedrock clients (which do not use httpx).

``botocore.endpoint.Endpoint._send`` is patched on the class, so every client is covered,
including ones created before ``%load_ext`` (Pay-i's SDK wraps client creation and misses
those). It runs once per HTTP attempt, after signing: the proxy rewrite happens there, so
the SigV4 signature (computed for the provider's host and path) passes through Pay-i
untouched. Outside a tracking scope it costs one context-variable read.

Plain JSON answers (Converse, errors) have been read by botocore inside ``send``; streaming
ones (ConverseStream, InvokeModel*) get a tee around the raw urllib3 response, which the
caller's ``EventStream``/``StreamingBody`` reads through unchanged. InvokeModel with its
token-count headers is recorded at once, without touching the caller's body.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from .. import tracking
from ..context import Context
from ..providers import bedrock
from ..providers.eventstream import CONTENT_TYPE as EVENTSTREAM
from . import hooks
from .exchange import Exchange
from .proxying import ProxyTarget, add_proxy_headers
from .routes import Route, RouteTable, client_route
from .streams import _Reader

_current = tracking._current
_installed: dict[type, Callable[..., Any]] = {}
_lock = threading.Lock()


def rewrite_prepared(request: Any, route: Route, target: ProxyTarget, context: Context, model: str | None = None) -> Context:
    """Re-address a signed ``AWSPreparedRequest`` to Pay-i's Bedrock proxy route, in place
    (``route.path`` is the path as signed: the model id stays encoded)."""
    query = urlsplit(request.url).query
    request.url = target.base_url.rstrip("/") + f"{route.spec.proxy_prefix}{route.path}" + (f"?{query}" if query else "")
    return add_proxy_headers(request.headers, route, target, context, model)


class RawTee(_Reader):
    """Wraps the urllib3 response botocore streams from: bytes pass on as read, a copy is read."""

    def __init__(self, inner: Any, exchange: Exchange, framing: str | None) -> None:
        super().__init__(inner, exchange, framing, None)
        self._filter = False  # never hold bytes back: a short read() would look like the end

    def stream(self, amt: int = 2**16, decode_content: bool | None = None) -> Iterator[bytes]:
        try:
            for chunk in self._inner.stream(amt, decode_content=decode_content):
                self._take(chunk)
                yield chunk
                self.catch_up()
        except Exception as exc:
            self._broken(exc)
            raise
        self._finish(eof=True)

    def _broken(self, exc: BaseException) -> None:
        """The connection broke mid-body (a cut stream): recorded now, with what arrived."""
        self._exchange.obs.error = self._exchange.obs.error or f"{type(exc).__name__}: {exc}"
        self._finish(eof=False)

    def read(self, amt: int | None = None, *args: Any, **kwargs: Any) -> bytes:
        try:
            chunk = self._inner.read(amt, *args, **kwargs)
        except Exception as exc:
            self._broken(exc)
            raise
        if chunk:
            self._take(chunk)
            self.catch_up()
        if not chunk or amt is None:
            self._finish(eof=True)
        return chunk

    def readinto(self, buffer: Any) -> int:
        count = self._inner.readinto(buffer)
        if count:
            self._take(bytes(memoryview(buffer)[:count]))
            self.catch_up()
        else:
            self._finish(eof=True)
        return count

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._finish(eof=False)

    def __getattr__(self, name: str) -> Any:  # _fp, release_conn, closed, ... as urllib3 has them
        inner = self.__dict__.get("_inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)


@lru_cache(maxsize=1024)
def _route(routes: RouteTable, url: str, bedrock_client: bool) -> Route | None:
    """The route of a request URL (memoised: a notebook repeats a few models and operations)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port
    route = routes.match(parts.scheme, host, port, parts.path)
    if route is None and bedrock_client:
        route = client_route(bedrock.PROVIDER.name, parts.scheme, host, port, parts.path)  # a custom endpoint_url (VPC, emulator)
    return route


def _hook(original: Callable[..., Any]) -> Callable[..., Any]:
    def _send(self: Any, request: Any) -> Any:
        scope = _current.get()
        if scope is None and tracking.ambient is not None:  # a Dask task's scope
            scope = tracking.ambient()
        config = hooks._config
        if scope is None or config is None:
            return original(self, request)
        try:
            route = _route(
                config.routes,
                request.url,
                getattr(self, "_endpoint_prefix", None) == "bedrock-runtime",
            )
            exchange = Exchange(config, scope, route, request, rewrite_prepared) if route is not None else None
        except Exception as exc:
            config.report("preparing capture failed; the call was sent uncaptured", exc)
            exchange = None
        if exchange is None:
            return original(self, request)
        try:
            response = original(self, request)
        except BaseException as exc:
            exchange.fail(exc)
            raise
        try:
            _on_response(exchange, request, response)
        except Exception as exc:
            config.report("reading the response failed", exc)
        return response

    _send.__payi_original__ = original  # type: ignore[attr-defined]
    return _send


def _on_response(exchange: Exchange, request: Any, response: Any) -> None:
    headers = response.headers
    exchange.status_code = response.status_code
    exchange.headers = headers
    if not request.stream_output:  # botocore read the body inside send
        exchange.finish_body(response.content, eof=True)
        return
    if response.status_code >= 300:  # botocore reads an error body whole at once anyway
        exchange.finish_body(response.content, eof=True)
        return
    if exchange.route.operation == "invoke" and exchange.mode == "telemetry" and bedrock.usage_from_headers(headers):
        exchange.finish_body(None, eof=True)  # counted from the headers; the caller's body stays theirs
        return
    framing = "eventstream" if EVENTSTREAM in headers.get("content-type", "") else None
    response.raw = RawTee(response.raw, exchange, framing)


def _patch(endpoint_class: type) -> None:
    with _lock:
        if endpoint_class not in _installed:
            _installed[endpoint_class] = endpoint_class._send  # type: ignore[attr-defined]
            endpoint_class._send = _hook(endpoint_class._send)  # type: ignore[attr-defined]


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Hooks botocore when it is first imported: importing it ourselves would add ~0.3 s (more on a
    busy machine) to every ``%load_ext``, boto3 user or not."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != _MODULE:
            return None
        spec = next(
            (found for finder in sys.meta_path if finder is not self and (found := _spec(finder, name, path, target))),
            None,
        )
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader)
        return spec


def _spec(finder: Any, name: str, path: Any, target: Any) -> importlib.machinery.ModuleSpec | None:
    find = getattr(finder, "find_spec", None)
    return find(name, path, target) if find is not None else None


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        if _finder in sys.meta_path:  # still wanted (not uninstalled meanwhile)
            _patch(module.Endpoint)


_MODULE = "botocore.endpoint"
_finder = _PatchOnImport()


def install() -> bool:
    """Hook botocore's send now if it is imported, else as soon as it is; True when hooked now."""
    module = sys.modules.get(_MODULE)
    if module is not None:
        _patch(module.Endpoint)
        return True
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    return False


def uninstall() -> None:
    with _lock:
        if _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
        for cls, original in _installed.items():
            cls._send = original  # type: ignore[attr-defined]
        _installed.clear()


def installed() -> bool:
    return bool(_installed)
