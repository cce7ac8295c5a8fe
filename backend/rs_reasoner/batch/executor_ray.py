"""Run units as Ray tasks, on a local Ray or a cluster (``auto``, ``ray://host:port``).

Each unit is one task (one CPU, and one GPU when the model runs on CUDA); Ray reuses worker
processes, so a worker loads each model once. A task whose worker dies is retried by Ray
(``max_retries``); results stream back to the driver, which alone writes the manifest, so
exactly-once output holds whatever Ray retries. Workers need ``rs-reasoner`` installed (a
cluster of machines: install it on every node, or ship it with a Ray runtime environment).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from rs_reasoner.batch.outcome import MAX_ATTEMPTS, OnStart, Outcome, UnitFn, describe
from rs_reasoner.batch.worker import UnitTask, run_unit
from rs_reasoner.errors import InvalidRequestError


def connect(address: str, num_cpus: int | None = None) -> None:
    """Connect to Ray once: ``auto`` (running cluster), ``ray://host:port``, or ``local``
    (start one on this machine with ``num_cpus``)."""
    try:
        import ray
    except ImportError:
        raise InvalidRequestError(
            "Ray is not installed.", "pip install 'rs-reasoner[batch]' (or pip install ray)."
        ) from None
    if ray.is_initialized():
        return
    if address == "local":
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)


def run_ray(
    tasks: list[UnitTask],
    address: str,
    workers: int,
    on_start: OnStart,
    fn: UnitFn = run_unit,
    num_gpus: float = 0.0,
) -> Iterator[Outcome]:
    """Run ``tasks`` on Ray, yielding outcomes as units end.

    Args:
        tasks: The units.
        address: See :func:`connect`.
        workers: Units in flight at once (0: the cluster's CPU count).
        on_start: Called each time a unit is submitted.
        fn: The unit function (tests wrap it).
        num_gpus: GPUs each task reserves (1 for a CUDA model).

    Yields:
        Outcomes.
    """
    import ray
    from ray.exceptions import RayError, RayTaskError

    connect(address, num_cpus=workers or None)
    limit = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    remote = ray.remote(num_cpus=1, num_gpus=num_gpus, max_retries=MAX_ATTEMPTS - 1)(fn)
    queue = deque(tasks)
    running: dict = {}
    while queue or running:
        while queue and len(running) < limit:
            task = queue.popleft()
            on_start(task.unit_id)
            running[remote.remote(task)] = task
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            task = running.pop(ref)
            try:
                yield Outcome(task.unit_id, report=ray.get(ref))
            except RayTaskError as exc:  # the unit raised: the cause is the real error
                yield Outcome(task.unit_id, error=describe(exc.cause or exc))
            except RayError as exc:  # worker or node lost after Ray's retries
                yield Outcome(task.unit_id, error=describe(exc))
