"""``Secret``: the one holder of the Pay-i key on the notebook side.

Settings, endpoints, the sender and the REST client all keep the key in a ``Secret``, so
no repr, ``str``, ``vars()`` dump, pickle or log line of theirs can show it; ``reveal()`` is
called only where a request header is written. ``mask`` blanks the key out of text a
server or an exception echoes, as a whole token only: masking every substring would give a
short key away ("un***nown" for the key ``k``).
"""

from __future__ import annotations

import hmac
import re
from typing import Any, NoReturn

_HIDDEN = "***"


class Secret:
    """A credential that shows itself nowhere."""

    __slots__ = ("_value", "_token")

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise TypeError("a Secret holds a non-empty string")
        self._value = value
        # the key as a whole token: not touching a letter or digit on either side
        self._token = re.compile(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])")

    def reveal(self) -> str:
        """The key itself, for the one header that carries it."""
        return self._value

    def mask(self, text: str) -> str:
        """``text`` with every whole-token occurrence of the key replaced by ``***``."""
        return self._token.sub(_HIDDEN, text)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            other = other._value
        if not isinstance(other, str):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other.encode())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Secret({_HIDDEN})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled: pass PAYI_API_KEY to the other process instead")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self
