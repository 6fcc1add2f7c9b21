"""Signal handling shared by the stages: install handlers for a block, or hold signals around a critical one.

Only `cli.py` decides what a signal means (exit status 130/143); these helpers make sure the handlers run at
safe points.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def signal_handlers(handlers: dict[int, Callable[[int, object], None]]) -> Iterator[Mapping[int, object]]:
    """Install `handlers` for the block, restore the previous ones after; yield the previous ones.

    Off the main thread (embedded use) nothing is installed and the dict is empty.
    """
    try:
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    except ValueError:
        yield {}
        return
    try:
        yield previous
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM (re-raised on exit) around a short critical section; a second signal goes through.

    Used around one input's output writes (all formats or none) and around the spawn of a beam-search
    worker (a handler running mid-spawn leaves the new process reading a cut pipe).

    Python-level handlers, not pthread_sigmask: a mask only covers the calling thread, and the kernel hands a
    process signal to any thread that does not block it (torch's worker threads), which then interrupts the
    main thread anyway.
    """
    held: list[int] = []
    previous: dict[int, object] = {}

    def hold(signum: int, frame: object) -> None:
        if not held:
            held.append(signum)
            return
        held.clear()  # asked twice (a write hanging on a slow file system): let it through now
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, frame)  # raises KeyboardInterrupt / cli._Terminated here
        else:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    try:
        with signal_handlers({signal.SIGINT: hold, signal.SIGTERM: hold}) as installed:
            previous.update(installed)
            yield
    finally:
        if held:
            signal.raise_signal(held[0])  # the usual handler runs now: KeyboardInterrupt / cli._Terminated
