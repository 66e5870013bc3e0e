"""How every interactive widget is displayed so that it outlives the page, the kernel and JavaScript.

Each displayed part is one output whose bundle carries the live widget and its static twin:
HTML and text for numbers, an SVG image for a chart (its own output, so renderers that
sanitise HTML, such as GitHub's, still show it as an image). JupyterLab, Notebook 7 and
VS Code pick the widget, which comes back after a page reload from the kernel's state;
nbconvert, GitHub, untrusted notebooks and terminals pick the twin. The twin is kept
current: each output has a ``display_id`` and is updated (throttled) when the widget
changes, so a save or export shows today's numbers. Re-running the cell that showed a
widget closes it (``retire``): its observers stop and no message goes to views that are gone.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

log = logging.getLogger("payi_notebook")

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
STATIC_EVERY_S = 1.0  # least seconds between two updates of a displayed static twin


def close_tree(widget: Any) -> None:
    """Close a widget and every widget inside it (containers first list their children)."""
    for child in getattr(widget, "children", ()):
        close_tree(child)
    widget.close()


def bundle(widget: Any, static: dict[str, str]) -> dict[str, Any]:
    """One output: ``widget``'s view when it is open, plus the static mime data."""
    data: dict[str, Any] = dict(static)
    model_id = getattr(widget, "_model_id", None)
    if getattr(widget, "comm", None) is not None and model_id:
        data[WIDGET_MIME] = {"version_major": 2, "version_minor": 0, "model_id": model_id}
    return data


class Snapshot:
    """Mixin for an ipywidgets container: static views, one output per part, twins kept current.

    Subclasses give ``html()``/``text()`` and may override ``parts()`` (widget, static mime
    data) to show as several outputs; ``close()`` must call ``retired()``.
    """

    _handles: list[Any] | None = None
    _shown: list[dict[str, Any]] | None = None
    _static_timer: threading.Timer | None = None
    _static_at = 0.0

    def html(self) -> str:
        raise NotImplementedError

    def text(self) -> str:
        raise NotImplementedError

    def parts(self) -> list[tuple[Any, dict[str, str]]]:
        """(widget, static mime data) per output; by default one output, the whole widget."""
        return [(self, {"text/plain": repr(self), "text/html": self.html()})]

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        try:
            return self.text()
        except Exception as exc:  # a repr never raises
            return f"<{type(self).__name__}: {type(exc).__name__}: {exc}>"

    def _bundles(self) -> list[dict[str, Any]]:
        try:
            return [bundle(widget, static) for widget, static in self.parts()]
        except Exception as exc:  # the text view still shows; the cell is not broken
            log.warning("payi_notebook: %s snapshot failed: %s", type(self).__name__, exc)
            return [bundle(self, {"text/plain": repr(self)})]

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict[str, Any]:
        """All parts in one bundle (a layout, or a front end asking for one): the first part's widget."""
        parts = self._bundles()
        merged = dict(parts[0])
        if len(parts) > 1:
            merged["text/html"] = self.html()
            merged["text/plain"] = repr(self)
        return merged

    def _ipython_display_(self) -> None:
        from IPython.display import display

        self._shown = self._bundles()
        self._handles = [display(data, raw=True, display_id=True) for data in self._shown]
        self._static_at = time.monotonic()
        retire_with_cell(self)

    def update_static(self) -> None:
        """Re-send the displayed outputs whose static twin changed, at most every ``STATIC_EVERY_S``."""
        if not self._handles:
            return
        wait = self._static_at + STATIC_EVERY_S - time.monotonic()
        if wait > 0:
            if self._static_timer is None:
                self._static_timer = threading.Timer(wait, self._send_static)
                self._static_timer.daemon = True
                self._static_timer.start()
            return
        self._send_static()

    def _send_static(self) -> None:
        self._static_timer = None
        handles, shown = self._handles, self._shown
        if not handles or shown is None:
            return
        self._static_at = time.monotonic()
        for i, data in enumerate(self._bundles()[: len(handles)]):
            if data != shown[i]:
                try:
                    handles[i].update(data, raw=True)
                    shown[i] = data
                except Exception as exc:  # a display failure never breaks anything else
                    log.warning("payi_notebook: updating a displayed %s failed: %s", type(self).__name__, exc)

    def retired(self) -> None:
        """Called by ``close()``: the displayed twins stay as they are, nothing is sent any more."""
        timer, self._static_timer = self._static_timer, None
        if timer is not None:
            timer.cancel()
        self._handles = None


class _Retirement:
    """Views shown by each cell, closed when that cell runs again (``pre_run_cell``)."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.by_cell: dict[str, list[weakref.ref[Any]]] = {}
        self.current: str | None = _cell_id_of(shell)
        shell.events.register("pre_run_cell", self.pre_run_cell)

    def pre_run_cell(self, info: Any) -> None:
        self.current = getattr(info, "cell_id", None)
        for ref in self.by_cell.pop(self.current or "", []):
            view = ref()
            if view is not None:
                try:
                    view.close()
                except Exception as exc:  # closing an old view never breaks the new run
                    log.warning("payi_notebook: closing a replaced %s failed: %s", type(view).__name__, exc)

    def add(self, view: Any) -> None:
        cell = self.current or _cell_id_of(self.shell)
        if cell:
            self.by_cell.setdefault(cell, []).append(weakref.ref(view))


_retirement: _Retirement | None = None
_retirement_lock = threading.Lock()


def _cell_id_of(shell: Any) -> str | None:
    """The running cell's id: IPython's current execution, else the kernel's execute request."""
    info = getattr(getattr(getattr(shell, "displayhook", None), "exec_result", None), "info", None)
    cell_id = getattr(info, "cell_id", None)
    if cell_id:
        return str(cell_id)
    kernel = getattr(shell, "kernel", None)
    try:
        parent: Any = kernel.get_parent() if kernel is not None else None
    except Exception:  # no execute request to read (a kernel between cells): the view is just not tied to a cell
        return None
    return (parent or {}).get("metadata", {}).get("cellId") if isinstance(parent, dict) else None


def retire_with_cell(view: Any, get_shell: Callable[[], Any] | None = None) -> None:
    """Close ``view`` when the cell now running is run again (no-op outside IPython)."""
    global _retirement
    from IPython import get_ipython

    shell = (get_shell or get_ipython)()
    if shell is None:
        return
    with _retirement_lock:
        if _retirement is None or _retirement.shell is not shell:
            _retirement = _Retirement(shell)
    _retirement.add(view)
