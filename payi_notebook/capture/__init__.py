"""Capture: hooks on the HTTP clients the provider SDKs use, and what they record.

``install()`` patches ``send`` on httpx/httpx2 clients; ``configure(CaptureConfig)`` says
where events go. Requests outside a tracking scope, or not to a known provider API, pass
untouched.
"""

from .exchange import CaptureConfig
from .hooks import configure, hooked_libraries, install, uninstall
from .proxying import ProxyTarget, proxy_url
from .routes import Route, RouteTable

__all__ = [
    "CaptureConfig",
    "ProxyTarget",
    "Route",
    "RouteTable",
    "configure",
    "install",
    "hooked_libraries",
    "proxy_url",
    "uninstall",
]
