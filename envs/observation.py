"""The one observation layout both env families use: named blocks laid end to end in a flat
vector, each with its shape for one copy.

A family's ``observation.py`` lists its blocks (and its sizes, e.g. ``num_devices``) and gets an
:class:`ObservationLayout`; ``layout.gain_db`` is that block's ``slice`` of the last axis,
``layout.num_devices`` a size, :meth:`ObservationLayout.sections` cuts an observation (or a
batch) into its blocks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ObservationLayout:
    """Where each block lies in a flat observation vector.

    Attributes:
        blocks: ``(name, shape)`` of each block in order (shape of one copy; ``()`` = one
            entry).
        dims: the sizes the layout was made for (e.g. ``{"num_devices": 20}``), readable as
            attributes.
        size: the observation's length.
        slices: each block's slice of the last axis.
        rule: the size in the sizes' symbols, for error messages (e.g. ``"3K+3"``).
    """

    blocks: tuple[tuple[str, tuple[int, ...]], ...]
    dims: Mapping[str, int]
    size: int
    slices: Mapping[str, slice]
    rule: str = ""

    @classmethod
    def of(
        cls, blocks: tuple[tuple[str, tuple[int, ...]], ...], rule: str = "", **dims: int
    ) -> ObservationLayout:
        """The layout of ``blocks`` laid end to end (``dims``: the sizes it was made for)."""
        slices, i = {}, 0
        for name, shape in blocks:
            n = prod(shape)
            slices[name] = slice(i, i + n)
            i += n
        return cls(tuple(blocks), dict(dims), i, slices, rule)

    def __getattr__(self, name: str) -> Any:
        # only called for names that are not fields: a block's slice or a size
        slices = object.__getattribute__(self, "slices")
        if name in slices:
            return slices[name]
        dims = object.__getattribute__(self, "dims")
        if name in dims:
            return dims[name]
        raise AttributeError(
            f"observation layout has no block or size {name!r}; blocks: {list(slices)}"
        )

    def __hash__(self) -> int:
        return hash((self.blocks, tuple(sorted(self.dims.items()))))

    @property
    def names(self) -> tuple[str, ...]:
        """Block names in order."""
        return tuple(name for name, _ in self.blocks)

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of block ``name`` for one copy."""
        return dict(self.blocks)[name]

    def __iter__(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        return iter(self.blocks)

    def sections(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """Every block of ``obs`` (..., size) as a (..., *shape) view, by name, in order.

        Raises:
            ValueError: the last axis of ``obs`` is not ``size`` long.
        """
        obs = np.asarray(obs)
        self.check(obs.shape)
        lead = obs.shape[:-1]
        return {
            name: obs[..., self.slices[name]].reshape(lead + shape) for name, shape in self.blocks
        }

    def check(self, shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` unless an observation (batch) of ``shape`` fits the layout."""
        if tuple(shape[-1:]) != (self.size,):
            sizes = ", ".join(f"{k}={v}" for k, v in self.dims.items())
            size = f"{self.rule} = {self.size}" if self.rule else str(self.size)
            raise ValueError(
                f"observation must have {size} entries on its last axis for "
                f"{sizes}, got shape {tuple(shape)}"
            )
