"""Many LLM calls at once, their results handed back in batches as they finish.

Cards and translations run the same way: the calls spend their time waiting on the
network, so a thread pool keeps `concurrency` of them in flight, while the caller's
thread stores what finished, one small transaction per batch (a crash keeps everything
stored so far, and SQLite never sees two writers).
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

log = logging.getLogger(__name__)
Item = TypeVar("Item")
Result = TypeVar("Result")


def finished_batches(
    items: Sequence[Item],
    work: Callable[[Item], Result],
    crashed: Callable[[Item, Exception], Result],
    *,
    concurrency: int,
    name: str,
) -> Iterator[list[tuple[Item, Result]]]:
    """Run `work` on every item, `concurrency` at a time, yielding (item, result) pairs in
    batches: whatever finished while the caller handled the last batch comes together,
    one commit per wake-up rather than per item, which keeps the database off the
    critical path. A `work` that raises gets `crashed(item, exc)` as its result: a bug on
    one item must not cost the others theirs.
    """
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix=name)
    try:
        finished: queue.SimpleQueue[Future[Result]] = queue.SimpleQueue()
        futures: dict[Future[Result], Item] = {}
        for item in items:
            future = pool.submit(work, item)
            futures[future] = item
            future.add_done_callback(finished.put)
        left = len(items)
        while left:
            done = [finished.get()]
            while True:
                try:
                    done.append(finished.get_nowait())
                except queue.Empty:
                    break
            left -= len(done)
            batch = []
            for future in done:
                try:
                    result = future.result()
                except Exception as exc:
                    log.exception("%s crashed", name)
                    result = crashed(futures[future], exc)
                batch.append((futures[future], result))
            yield batch
    finally:
        # On an error in the caller (the database went away), or when it stops asking, do
        # not start the items still queued.
        pool.shutdown(wait=True, cancel_futures=True)
