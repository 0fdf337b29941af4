"""Vocabulary: how the engine splits a lease's provider work into calls: as many calls in flight as
the policy allows, each carrying as many devices as the provider takes in one call."""

from __future__ import annotations

from collections.abc import Sequence
from math import ceil
from typing import TypeVar

T = TypeVar("T")


def batches(items: Sequence[T], workers: int, most: int) -> list[list[T]]:
    """`items` in order, in slices of at most `most`, and small enough that every worker gets
    one: 500 servers over 8 workers, at most 25 a call, are 20 calls of 25; with a provider
    that takes one a call (most 1) they are 500 calls of one."""
    if not items:
        return []
    size = max(1, min(most, ceil(len(items) / max(1, workers))))
    return [list(items[n : n + size]) for n in range(0, len(items), size)]
