"""Run units in this machine's worker processes (or in this process with ``workers=0``).

Each worker process reads, segments and vectorises whole units and keeps its models
loaded. A worker that dies (out of memory, killed) breaks the process pool: the pool is
rebuilt and the units that were in flight are handed out again, up to
:data:`~rs_reasoner.batch.outcome.MAX_ATTEMPTS` times each.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from rs_reasoner.batch.outcome import MAX_ATTEMPTS, OnStart, Outcome, UnitFn, describe
from rs_reasoner.batch.worker import UnitTask, run_unit


def run_local(
    tasks: list[UnitTask], workers: int, on_start: OnStart, fn: UnitFn = run_unit
) -> Iterator[Outcome]:
    """Run ``tasks``, yielding each unit's outcome as it ends (in completion order).

    Args:
        tasks: The units.
        workers: Worker processes (0: run in this process, one unit at a time).
        on_start: Called each time a unit is handed to a worker.
        fn: The unit function (tests wrap it).

    Yields:
        Outcomes.
    """
    if workers <= 0:
        for task in tasks:
            on_start(task.unit_id)
            try:
                yield Outcome(task.unit_id, report=fn(task))
            except Exception as exc:
                yield Outcome(task.unit_id, error=describe(exc))
        return
    queue = list(reversed(tasks))
    tries = {t.unit_id: 0 for t in tasks}
    # 'spawn': a forked child of a process that touched CUDA or threads may deadlock.
    context = multiprocessing.get_context("spawn")
    while queue:
        broken = False
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            running: dict[Future, UnitTask] = {}
            while (queue or running) and not broken:
                while queue and len(running) < 2 * workers:  # keep every worker fed
                    task = queue.pop()
                    tries[task.unit_id] += 1
                    on_start(task.unit_id)
                    running[pool.submit(fn, task)] = task
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    task = running.pop(future)
                    try:
                        yield Outcome(task.unit_id, report=future.result())
                    except BrokenProcessPool:
                        broken = True
                        queue.append(task)
                    except Exception as exc:
                        yield Outcome(task.unit_id, error=describe(exc))
            if broken:
                # Every unit still in the dead pool is lost with it: hand them out again.
                queue.extend(running.values())
                pool.shutdown(wait=False, cancel_futures=True)
        for task in list(queue):
            if tries[task.unit_id] >= MAX_ATTEMPTS:
                queue.remove(task)
                yield Outcome(task.unit_id, error=f"worker died {MAX_ATTEMPTS} times")
