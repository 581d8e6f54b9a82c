"""The life cycle every part of the daemon follows, and the pool its blocking work runs in.

A part (`Part`) is started once, in order, and stopped once, in reverse, each
within its own share of the stop budget: `Parts` keeps the list. Stopping a
part never blocks the event loop: a blocking stop runs in a thread of its own
(`in_thread`) and what does not finish by its deadline is abandoned, never
waited for (daemon threads; what it left undone is settled at the next start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

log = logging.getLogger("buzzbotd")
SLACK_S = 0.25      # past its deadline, for a part that stops on time to say so


class Part(Protocol):
    """One part of the daemon: `start()` in order, `await stop(deadline)` in
    reverse; `deadline` is on time.monotonic(), and `stop_s` the part's share."""

    name: str
    stop_s: float

    def start(self) -> None: ...

    async def stop(self, deadline: float) -> None: ...


class Parts:
    """The started parts, stopped in reverse order, each by its deadline."""

    def __init__(self) -> None:
        self._started: list[Part] = []

    def start(self, part: Part) -> None:
        part.start()
        self._started.append(part)

    async def stop(self) -> None:
        """Each part gets its `stop_s`; one that takes longer is abandoned."""
        while self._started:
            part = self._started.pop()
            try:
                await asyncio.wait_for(part.stop(time.monotonic() + part.stop_s),
                                       part.stop_s + SLACK_S)
            except TimeoutError:
                log.warning("%s did not stop within %gs; abandoned", part.name, part.stop_s)
            except Exception as e:  # noqa: BLE001 - the stop goes on with the next part
                log.warning("%s failed to stop: %s", part.name, str(e) or type(e).__name__)

    def stop_now(self) -> None:
        """From outside any loop (a start that failed before the loop ran)."""
        if self._started:
            asyncio.run(self.stop())


class Stopped:
    """A part from two plain functions: `start()` and a stop that may block
    (given the seconds it may take), run in a thread of its own."""

    def __init__(self, name: str, stop: Callable[[float], object], stop_s: float,
                 start: Callable[[], object] = lambda: None) -> None:
        self.name = name
        self.stop_s = stop_s
        self._start = start
        self._stop = stop

    def start(self) -> None:
        self._start()

    async def stop(self, deadline: float) -> None:
        await in_thread(lambda: self._stop(max(deadline - time.monotonic(), 0)),
                        f"stop-{self.name}")


def close_loop(loop: asyncio.AbstractEventLoop, executor: WorkerPool | None,
               timeout: float) -> None:
    """Cancels what is left in `loop`, gives it `timeout`, closes it. Threads of
    its executor still busy are abandoned (daemon threads)."""
    with contextlib.suppress(Exception):
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.wait(tasks, timeout=timeout))
        loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(), timeout))
    if executor is not None:
        busy = executor.shutdown(timeout=0)
        if busy:
            log.warning("blocking calls still running at exit, abandoned: %s", ", ".join(busy))
    loop.close()


def in_thread(fn: Callable[[], object], name: str) -> asyncio.Future:
    """Runs blocking `fn` in a thread of its own (the executor's may all be busy)."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def work() -> None:
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - handed to the awaiting coroutine
            loop.call_soon_threadsafe(_resolve, future, None, e)
        else:
            loop.call_soon_threadsafe(_resolve, future, result, None)

    threading.Thread(target=work, name=name, daemon=True).start()
    return future


def _resolve(future: asyncio.Future, result: object, error: Exception | None) -> None:
    """In the loop: hands the thread's outcome to whoever awaits `future` (unless cancelled)."""
    if not future.done():
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class WorkerPool(ThreadPoolExecutor):
    """N named daemon threads running submitted functions; bounded shutdown.

    Also the event loop's default executor (asyncio.to_thread): the standard
    ThreadPoolExecutor's threads are joined at interpreter exit, so one /price
    stuck on a slow price API would hold a stop past TimeoutStopSec; these
    threads are daemon threads, and what is still running at exit is abandoned.
    It is a ThreadPoolExecutor only because asyncio (3.11) accepts nothing else
    as a default executor: submit and shutdown are its own, and the base class's
    __init__ (which would register threads to be joined at exit) is not called."""

    def __init__(self, size: int, name: str = "job") -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i + 1}", daemon=True)
                         for i in range(size)]
        self._closed = False
        self._busy: set[str] = set()
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        if self._closed:
            future.cancel()
            future.set_running_or_notify_cancel()
            return future
        self._queue.put((future, fn, args, kwargs))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                name = threading.current_thread().name
                self._busy.add(name)
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as e:  # noqa: BLE001 - reported through the future
                    future.set_exception(e)
                finally:
                    self._busy.discard(name)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False,
                 timeout: float = 0.0) -> list[str]:
        """Stops taking work, waits up to `timeout` (never longer, whatever `wait`
        says), returns the threads still busy."""
        if not self._closed:
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.name in self._busy:
                thread.join(max(deadline - time.monotonic(), 0))
        return sorted(self._busy)
