"""Benchmarks' bare processes: n spawned children that start their timed part together.

Each child gets its own arguments followed by a barrier (wait on it once its warm-up or loading
is done) and a queue (put exactly one result on it).
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Callable, Sequence
from typing import Any


def run_spawned(
    target: Callable[..., None], args_per_child: Sequence[tuple], what: str
) -> list[Any]:
    """One result per child, in the order they arrive; SystemExit naming `what` if a child fails."""
    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
    ready, results = ctx.Barrier(len(args_per_child)), ctx.Queue()
    children = [ctx.Process(target=target, args=(*args, ready, results)) for args in args_per_child]
    for child in children:
        child.start()
    out: list[Any] = []
    while len(out) < len(children):
        try:
            out.append(results.get(timeout=5))
        except queue.Empty:  # a child that died would leave us waiting forever
            if any(child.exitcode not in (None, 0) for child in children):
                raise SystemExit(
                    f"{what}: a child process failed (exit codes "
                    f"{[child.exitcode for child in children]})"
                ) from None
    for child in children:
        child.join()
    return out
