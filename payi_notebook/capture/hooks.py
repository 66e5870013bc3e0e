"""The ``send`` hooks on httpx and httpx2 clients (sync and async), and aiohttp's request path.

Patching the class method catches every client instance, including ones created before
the hook was installed. Outside a tracking scope the hook costs one context-variable
read; inside, one URL match before anything else is done.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .. import tracking
from .exchange import CaptureConfig, Exchange
from .streams import stream_classes

LIBRARIES = ("httpx", "httpx2")

_config: CaptureConfig | None = None
_installed: dict[tuple[type, str], Callable[..., Any]] = {}
_lock = threading.Lock()
_current = tracking.scope_var()


def configure(config: CaptureConfig | None) -> None:
    """Swap the capture configuration (atomic: hooks read one module global)."""
    global _config
    _config = config


def _begin(request: Any) -> tuple[CaptureConfig, Any, Any] | None:
    """(config, scope, route) when this request should be captured, else None."""
    scope = _current.get()
    if scope is None:
        resolver = tracking.ambient
        if resolver is None:
            return None
        scope = resolver()
    config = _config
    if scope is None or config is None:
        return None
    url = request.url
    path = url.raw_path.partition(b"?")[0].decode("ascii")  # as sent and signed: a Bedrock ARN keeps its %2F
    route = config.routes.match(url.scheme, url.host, url.port, path)
    if route is None:
        return None
    return config, scope, route


def _sync_hook(original: Callable[..., Any], streams: tuple[type, type]) -> Callable[..., Any]:
    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        target = _begin(request)
        if target is None:
            return original(self, request, **kwargs)
        config, scope, route = target
        try:
            exchange = Exchange(config, scope, route, request)
        except Exception as exc:
            config.report("preparing capture failed; the call was sent uncaptured", exc)
            return original(self, request, **kwargs)
        try:
            response = original(self, request, **kwargs)
        except BaseException as exc:
            exchange.fail(exc)
            raise
        try:
            return exchange.on_response(response, streams, is_async=False)
        except Exception as exc:
            config.report("reading the response failed", exc)
            return response

    send.__payi_original__ = original  # type: ignore[attr-defined]
    return send


def _async_hook(original: Callable[..., Any], streams: tuple[type, type]) -> Callable[..., Any]:
    async def send(self: Any, request: Any, **kwargs: Any) -> Any:
        target = _begin(request)
        if target is None:
            return await original(self, request, **kwargs)
        config, scope, route = target
        try:
            exchange = Exchange(config, scope, route, request)
        except Exception as exc:
            config.report("preparing capture failed; the call was sent uncaptured", exc)
            return await original(self, request, **kwargs)
        try:
            response = await original(self, request, **kwargs)
        except BaseException as exc:
            exchange.fail(exc)
            raise
        try:
            return exchange.on_response(response, streams, is_async=True)
        except Exception as exc:
            config.report("reading the response failed", exc)
            return response

    send.__payi_original__ = original  # type: ignore[attr-defined]
    return send


def _libraries() -> list[ModuleType]:
    found: list[ModuleType] = []
    for name in LIBRARIES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if all(module is not seen for seen in found):
            found.append(module)
    return found


def install() -> list[str]:
    """Hook every importable library once; returns the names of the libraries hooked."""
    hooked: list[str] = []
    with _lock:
        for lib in _libraries():
            streams = stream_classes(lib)
            for cls_name, factory in (("Client", _sync_hook), ("AsyncClient", _async_hook)):
                cls = getattr(lib, cls_name)
                if (cls, "send") in _installed:
                    continue
                original = cls.send
                _installed[(cls, "send")] = original
                cls.send = factory(original, streams)
            hooked.append(lib.__name__)
        if _hook_aiohttp():
            hooked.append("aiohttp")
    from . import botocore_hook  # boto3 sends through botocore/urllib3, not httpx

    if botocore_hook.install():
        hooked.append("botocore")
    return hooked


def _hook_aiohttp() -> bool:
    """google-genai's async path when aiohttp is importable (caller holds the lock)."""
    try:
        import aiohttp
    except ImportError:
        return False
    from .aiohttp_hook import aiohttp_hook

    cls = aiohttp.ClientSession
    if (cls, "_request") not in _installed:
        original = cls._request
        _installed[(cls, "_request")] = original
        cls._request = aiohttp_hook(original, _begin)  # type: ignore[method-assign]
    return True


def uninstall() -> None:
    """Restore the original ``send`` methods."""
    with _lock:
        for (cls, attr), original in _installed.items():
            setattr(cls, attr, original)
        _installed.clear()
    from . import botocore_hook

    botocore_hook.uninstall()


def hooked_libraries() -> tuple[str, ...]:
    """Names of the hooked HTTP libraries (for ``%payi status``)."""
    from . import botocore_hook

    names = {cls.__module__.split(".")[0] for cls, _ in _installed} | ({"botocore"} if botocore_hook.installed() else set())
    return tuple(sorted(names))
