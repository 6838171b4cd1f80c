"""The Python half of the bench's figure (p): the Python client's Worker on one map run.

Run by the Rust bench (bench/src/python.rs) as a subprocess, one process per workload:

    python map_workers.py --workflow bench_py_map --fetch-items 10000 --expect 10001 \
        --workers 4 --batch-size 50 --concurrency 8 --max-wait-ms 100 \
        --complete-in-batches off "<conninfo>"

It starts ``--workers`` ``quantum_flow.Worker``s (each with its own connections) in this
process and speaks JSON lines on stdout:

    {"ready": true, ...}          the workers are started (the bench then starts the run)
    {"progress": N}               completions so far, about once a second
    {"done": N}                   as soon as N >= --expect tasks have been completed
    {"stats": {...}}              after "stop" arrives on stdin: the workers' summed stats

Step functions: ``fetch`` answers ``list(range(--fetch-items))``, ``items`` answers its
``item``. Nothing is slept on. ``--complete-in-batches on`` asks the Worker for
``complete_in_batches=True`` (its answering thread sends waiting completions together with
one ``complete_tasks``); off, each task is completed with its own ``complete_task``. A client
whose Worker has no ``complete_in_batches`` keyword completes one task per call (its only
way), and the ready line says so.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys
import threading
import time
from typing import Any, Dict, List


def emit(obj: Dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("conninfo")
    p.add_argument("--workflow", required=True)
    p.add_argument("--fetch-items", type=int, default=0)
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-wait-ms", type=int, default=100)
    p.add_argument("--complete-in-batches", choices=["on", "off"], default="off")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    try:
        import quantum_flow
        from quantum_flow import Worker
    except ImportError as e:
        emit({"error": f"cannot import quantum_flow with {sys.executable}: {e}"})
        return 2

    supported = "complete_in_batches" in inspect.signature(Worker.__init__).parameters
    want = a.complete_in_batches == "on"
    options: Dict[str, Any] = {}
    if supported:
        options["complete_in_batches"] = want
    n = a.fetch_items
    functions = {
        "fetch": lambda _input: list(range(n)),
        "items": lambda input: input["item"],
    }
    workers: List[Any] = []
    try:
        for i in range(a.workers):
            w = Worker(
                a.conninfo,
                a.workflow,
                functions,
                batch_size=a.batch_size,
                max_wait_ms=a.max_wait_ms,
                concurrency=a.concurrency,
                worker_id=f"bench-py{i}",
                **options,
            )
            workers.append(w.start())
    except Exception as e:  # noqa: BLE001 - reported to the bench
        emit({"error": f"cannot start the workers: {type(e).__name__}: {e}"})
        for w in workers:
            w.stop(timeout=10)
        return 2

    emit(
        {
            "ready": True,
            "python": sys.version.split()[0],
            "client": f"quantum_flow {getattr(quantum_flow, '__version__', '?')} "
            f"({quantum_flow.__file__})",
            "complete_in_batches_supported": supported,
            "complete_in_batches": want and supported,
        }
    )

    stop = threading.Event()

    def watch() -> None:
        announced = False
        last = time.monotonic()
        while not stop.is_set():
            done = sum(w.stats.completed for w in workers)
            if not announced and done >= a.expect:
                emit({"done": done})
                announced = True
            if time.monotonic() - last >= 1.0:
                emit({"progress": done})
                last = time.monotonic()
                if any(not w.running for w in workers):
                    emit({"error": "a worker stopped early (see its log above)"})
            time.sleep(0.001)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stop.set()
    watcher.join()
    totals = {"completed": 0, "failed": 0, "ignored": 0}
    errors = []
    for w in workers:
        try:
            s = w.stop(timeout=30)
        except Exception as e:  # noqa: BLE001 - reported to the bench
            errors.append(f"{type(e).__name__}: {e}")
            s = w.stats
        totals["completed"] += s.completed
        totals["failed"] += s.failed
        totals["ignored"] += s.ignored
    emit({"stats": totals, "errors": errors})
    return 0


if __name__ == "__main__":
    sys.exit(main())
