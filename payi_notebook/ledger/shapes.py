"""Per-shape lookup tables, extended as shapes are added and never rebuilt.

A shape (what a cell's calls share, ``schema.SHAPE_TYPES`` and the ``Context``) only ever
gets appended to a store, and a long session has thousands. Building a chunk of rows reads
each row's values through these tables (``table[shape_codes]``), so a table is worked out
once per shape, not once per build. Numbering is first seen first, so codes handed out
earlier stay valid as categories grow: that is what lets ``chunks`` keep built chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..units import ANTHROPIC_LAYOUT_PROVIDERS
from .schema import CONTEXT_POSITION, SHAPE_POSITIONS, TEXT

Shape = tuple[Any, ...]


class Numbering:
    """Distinct keys numbered first seen first (None is -1): the ledger's one identity/memo helper."""

    __slots__ = ("codes", "keys")

    def __init__(self) -> None:
        self.codes: dict[Hashable, int] = {}
        self.keys: list[Any] = []

    def code(self, key: Hashable) -> int:
        if key is None:
            return -1
        code = self.codes.get(key)
        if code is None:
            code = self.codes[key] = len(self.keys)
            self.keys.append(key)
        return code


def field_of(name: str) -> Callable[[Shape], Any]:
    """A shape's value of ``name`` (a shape field or a ``Context`` attribute)."""
    if name in SHAPE_POSITIONS:
        position = SHAPE_POSITIONS[name]
        return lambda shape: shape[position]
    return lambda shape: getattr(shape[CONTEXT_POSITION], name)


def _key_of(name: str) -> Callable[[Shape], Hashable]:
    """What numbers a shape's value: the value, or a hashable form of the nested ones."""
    get = field_of("provider" if name == "anthropic" else name)
    if name == "anthropic":
        return lambda shape: get(shape) in ANTHROPIC_LAYOUT_PROVIDERS
    if name == "limit_ids":
        return lambda shape: tuple(get(shape))
    if name == "properties":
        return lambda shape: tuple(get(shape).items())
    return get


_PLAIN = {"execution_count": object, "use_case_version": object, "streaming": bool, "anthropic": bool}


class ShapeTables:
    """The per-shape tables of one store, each made on first use and extended after.

    ``codes(name)`` numbers text fields and nested values (``keys(name)`` gives the value of
    each code); ``values(name)`` holds plain ones (``_PLAIN``). Only builds use it, one at a
    time (under the ledger's build lock).
    """

    def __init__(self) -> None:
        self._lists: dict[str, list[Any]] = {}
        self._numberings: dict[str, Numbering] = {}
        self._arrays: dict[str, np.ndarray] = {}
        self._dtypes: dict[str, pd.CategoricalDtype] = {}

    def _extend(self, name: str, shapes: Sequence[Shape]) -> np.ndarray:
        values = self._lists.setdefault(name, [])
        if len(values) < len(shapes):
            key = _key_of(name)
            new = shapes[len(values) :]
            if name in _PLAIN:
                values.extend(key(shape) for shape in new)
            else:
                numbering = self._numberings.setdefault(name, Numbering())
                values.extend(numbering.code(key(shape)) for shape in new)
            self._arrays[name] = np.array(values, dtype=_PLAIN.get(name, np.int32))
        array = self._arrays.get(name)
        if array is None:
            array = self._arrays[name] = np.array(values, dtype=_PLAIN.get(name, np.int32))
        return array[: len(shapes)]

    def values(self, name: str, shapes: Sequence[Shape]) -> np.ndarray:
        """One value per shape of a plain field (``_PLAIN``)."""
        return self._extend(name, shapes)

    def codes(self, name: str, shapes: Sequence[Shape]) -> np.ndarray:
        """One code per shape (-1: None) of a text field, ``limit_ids`` or ``properties``."""
        return self._extend(name, shapes)

    def keys(self, name: str) -> list[Any]:
        """The value of each code so far (nested values as tuples)."""
        return self._numberings.setdefault(name, Numbering()).keys

    def dtype(self, name: str, shapes: Sequence[Shape]) -> pd.CategoricalDtype:
        """The category dtype of a text field: its distinct values so far, first seen first."""
        self._extend(name, shapes)
        keys = self.keys(name)
        dtype = self._dtypes.get(name)
        if dtype is None or len(dtype.categories) != len(keys):
            dtype = self._dtypes[name] = pd.CategoricalDtype(pd.Index(keys, dtype=TEXT))
        return dtype
