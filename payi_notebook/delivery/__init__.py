"""Delivery: the journal and the background sender that prices events and delivers them to Pay-i.

``Flusher`` (``sender.py``) is the sender; ``FlushReport``/``FlusherStatus`` (``tallies.py``)
what it reports; ``journal.py``, ``spool.py`` and ``spool_format.py`` the durable journal.
Delivery never imports capture: it consumes ``records.CallRecord``.
"""

from .sender import Flusher
from .tallies import FlusherStatus, FlushReport
from .use_cases import USE_CASE_NOT_FOUND

__all__ = ["USE_CASE_NOT_FOUND", "FlushReport", "Flusher", "FlusherStatus"]
