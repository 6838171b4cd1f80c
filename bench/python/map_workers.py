"""The Python half of the bench's figure (p): the Python client's Worker on one map run.

Run by the Rust bench (bench/src/python.rs) as a subprocess, one per workload:

    python map_workers.py --workflow bench_py_map --fetch-items 10000 --expect 10001 \
        --workers 4 --batch-size 50 --concurrency 8 --max-wait-ms 100 \
        --complete-in-batches off "<conninfo>"

It starts ``--workers`` processes, each running one ``quantum_flow.Worker`` (with its own
connections), as a pool of worker processes is deployed: one process's threads share one
interpreter lock, so a single process would measure Python's lock rather than the client.
This process speaks JSON lines on stdout:

    {"ready": true, ...}          every worker is started (the bench then starts the run)
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
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
from typing import Any, Dict, List


def emit(obj: Dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def worker_process(i: int, a: argparse.Namespace, completed: Any, stop: Any, out: Any) -> None:
    """One worker process: starts its Worker, says so on ``out``, publishes its completions
    in ``completed[i]`` until ``stop`` is set (or the parent is gone: the bench killed it),
    then stops the Worker and sends its stats."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    parent = os.getppid()
    try:
        import quantum_flow
        from quantum_flow import Worker
    except ImportError as e:
        out.put({"error": f"cannot import quantum_flow with {sys.executable}: {e}"})
        return
    supported = "complete_in_batches" in inspect.signature(Worker.__init__).parameters
    options: Dict[str, Any] = {}
    if supported:
        options["complete_in_batches"] = a.complete_in_batches == "on"
    n = a.fetch_items
    functions = {
        "fetch": lambda _input: list(range(n)),
        "items": lambda input: input["item"],
    }
    try:
        w = Worker(
            a.conninfo,
            a.workflow,
            functions,
            batch_size=a.batch_size,
            max_wait_ms=a.max_wait_ms,
            concurrency=a.concurrency,
            worker_id=f"bench-py{i}",
            **options,
        ).start()
    except Exception as e:  # noqa: BLE001 - reported to the bench
        out.put({"error": f"cannot start worker {i}: {type(e).__name__}: {e}"})
        return
    out.put(
        {
            "ready": i,
            "python": sys.version.split()[0],
            "client": f"quantum_flow {getattr(quantum_flow, '__version__', '?')} "
            f"({quantum_flow.__file__})",
            "complete_in_batches_supported": supported,
        }
    )
    while not stop.wait(0.001):
        completed[i] = w.stats.completed
        if os.getppid() != parent:
            break
        if not w.running:
            out.put({"error": f"worker {i} stopped early (see its log above)"})
            break
    errors = []
    try:
        s = w.stop(timeout=30)
    except Exception as e:  # noqa: BLE001 - reported to the bench
        errors.append(f"{type(e).__name__}: {e}")
        s = w.stats
    completed[i] = s.completed
    out.put(
        {
            "stats": {"completed": s.completed, "failed": s.failed, "ignored": s.ignored},
            "errors": errors,
        }
    )


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

    # spawn, not fork: each process starts from a clean interpreter
    ctx = mp.get_context("spawn")
    completed = ctx.Array("q", a.workers, lock=False)
    stop = ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(target=worker_process, args=(i, a, completed, stop, out), daemon=True)
        for i in range(a.workers)
    ]
    for proc in procs:
        proc.start()

    ready: List[Dict[str, Any]] = []
    while len(ready) < a.workers:
        try:
            msg = out.get(timeout=1)
        except queue.Empty:
            if any(proc.exitcode is not None for proc in procs):
                msg = {"error": "a worker process exited before it was ready (see its log above)"}
            else:
                continue
        if "error" in msg:
            emit(msg)
            stop.set()
            for proc in procs:
                proc.join(30)
            return 2
        ready.append(msg)
    first = ready[0]
    supported = bool(first["complete_in_batches_supported"])
    emit(
        {
            "ready": True,
            "python": first["python"],
            "client": first["client"],
            "complete_in_batches_supported": supported,
            "complete_in_batches": a.complete_in_batches == "on" and supported,
        }
    )

    watching = threading.Event()
    # stats a worker process sent before "stop" (one whose Worker stopped early)
    finals: List[Dict[str, Any]] = []

    def watch() -> None:
        announced = False
        last = time.monotonic()
        while not watching.is_set():
            done = sum(completed)
            if not announced and done >= a.expect:
                emit({"done": done})
                announced = True
            if time.monotonic() - last >= 1.0:
                emit({"progress": done})
                last = time.monotonic()
                if any(not proc.is_alive() for proc in procs):
                    emit({"error": "a worker process exited early (see its log above)"})
            try:
                msg = out.get_nowait()
            except queue.Empty:
                time.sleep(0.001)
                continue
            if "error" in msg:
                emit(msg)
            else:
                finals.append(msg)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    watching.set()
    watcher.join()
    stop.set()
    totals = {"completed": 0, "failed": 0, "ignored": 0}
    errors: List[str] = []
    while len(finals) < a.workers:
        try:
            msg = out.get(timeout=60)
        except queue.Empty:
            errors.append(f"{a.workers - len(finals)} worker process(es) sent no stats")
            break
        if "error" in msg:
            errors.append(msg["error"])
        else:
            finals.append(msg)
    for msg in finals:
        for k in totals:
            totals[k] += msg["stats"][k]
        errors.extend(msg["errors"])
    for proc in procs:
        proc.join(30)
    emit({"stats": totals, "errors": errors})
    return 0


if __name__ == "__main__":
    sys.exit(main())
