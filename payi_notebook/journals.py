"""Journals beyond our own: what the load line says about them, and ``pn.journal`` / ``%payi journal``.

Each Pay-i endpoint has its own journal directory; events journalled for another endpoint
(a kernel that ran with another key or base URL) are never sent anywhere by themselves.
These functions list them, deliver them to the current endpoint, or discard them.
"""

from __future__ import annotations

from typing import Any

from .delivery.journal import discard, find, others


def announcement(flusher: Any, said: str | None) -> str | None:
    """``said`` plus a line when durability is degraded or other endpoints' events wait."""
    status = flusher.journal_status()
    lines = [said] if said else []
    if warning := status.warning():
        lines.append(f"payi_notebook: {warning}; see %payi status.")
    if status.others:
        count = sum(o.events for o in status.others)
        lines.append(f"payi_notebook: {count} undelivered event(s) journalled for another endpoint; see %payi status.")
    return "\n".join(lines) or None


def manage(flusher: Any, action: str | None = None, name: str | None = None) -> str:
    """List the journals left for other endpoints; ``deliver``/``discard`` one by name (or ``all``)."""
    root, own = flusher.spool_dir.parent, flusher.spool_dir
    listed = others(root, own)
    if action is None:
        if not listed:
            return "payi: no undelivered events journalled for other endpoints"
        return "\n".join(
            f"{o.name}: {o.events} undelivered event(s) for {o.endpoint}" + (f", {o.in_use} file(s) in use" if o.in_use else "")
            for o in listed
        )
    if action not in ("deliver", "discard") or not name:
        raise ValueError("use journal deliver NAME|all or journal discard NAME|all (NAME as %payi journal lists it)")
    targets = [root / o.name for o in listed] if name == "all" else [find(root, own, name)]
    if action == "deliver":
        count = sum(flusher.deliver(path) for path in targets)
        return f"payi: {count} event(s) from other journals queued for {flusher.endpoint}"
    count = sum(discard(path) for path in targets)
    return f"payi: discarded {count} undelivered event(s) from other journals"
