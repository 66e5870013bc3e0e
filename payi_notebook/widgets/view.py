"""What every interactive widget shows where widgets cannot render.

A widget's display bundle carries three views of it: the live widget, a static HTML
snapshot and plain text. JupyterLab, Notebook 7 and VS Code pick the widget; nbconvert
(which drops widget views without saved state), GitHub previews and terminals fall back
to the HTML or the text, so a saved notebook stays readable. After ``close()`` only the
snapshot is left.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("payi_notebook")

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def close_tree(widget: Any) -> None:
    """Close a widget and every widget inside it (containers first list their children)."""
    for child in getattr(widget, "children", ()):
        close_tree(child)
    widget.close()


class Snapshot:
    """Mixin for an ipywidgets container: ``html()``/``text()`` snapshots and a bundle with all three."""

    def html(self) -> str:
        raise NotImplementedError

    def text(self) -> str:
        raise NotImplementedError

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        try:
            return self.text()
        except Exception as exc:  # a repr never raises
            return f"<{type(self).__name__}: {type(exc).__name__}: {exc}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = {"text/plain": repr(self)}
        try:
            bundle["text/html"] = self.html()
        except Exception as exc:  # the text view still shows; the cell is not broken
            log.warning("payi_notebook: %s snapshot failed: %s", type(self).__name__, exc)
        model_id = getattr(self, "_model_id", None)
        if getattr(self, "comm", None) is not None and model_id:
            bundle[WIDGET_MIME] = {"version_major": 2, "version_minor": 0, "model_id": model_id}
        return bundle
