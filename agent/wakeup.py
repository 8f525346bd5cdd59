"""Waking the daemon loop from signal handlers and other threads without taking a lock.

A Python signal handler runs on the main thread between two bytecodes, possibly while that
thread holds a lock (a ``threading.Event``'s condition, the logger's). A handler that takes a
lock itself - ``Event.set()``, a log call - can then deadlock the process, or recurse when
signals arrive faster than it returns. So the handlers here only assign a flag; the wake-up
itself is a byte that ``signal.set_wakeup_fd`` writes (in C) to a pipe, and the loop sleeps in
``select`` on the pipe and reads which signals came.
"""

from __future__ import annotations

import os
import select
import signal
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress

__all__ = ["Wakeup"]


def _close(*fds: int) -> None:
    for fd in fds:
        with suppress(OSError):
            os.close(fd)


class Wakeup:
    """A self-pipe: ``notify`` from anywhere, ``wait`` on the loop's thread."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        weakref.finalize(self, _close, self._read, self._write)
        # Set by the stop signals' handlers and read by writer threads: a plain attribute
        # assignment, atomic under the interpreter lock, and no lock of its own.
        self.stop_requested = False

    def notify(self, signum: int) -> None:
        """Wake the loop as if ``signum`` had arrived (safe from any thread)."""
        with suppress(BlockingIOError):  # a full pipe wakes the loop already
            os.write(self._write, bytes([signum]))

    def request_stop(self) -> None:
        self.stop_requested = True
        self.notify(signal.SIGTERM)

    def wait(self, timeout: float) -> list[int]:
        """Sleep until woken or ``timeout`` seconds pass; return the signals that came."""
        if timeout > 0:
            select.select([self._read], [], [], timeout)
        return self.drain()

    def drain(self) -> list[int]:
        received = bytearray()
        while True:
            try:
                chunk = os.read(self._read, 4096)
            except BlockingIOError:
                break
            if not chunk:
                break
            received += chunk
        return list(received)

    @contextmanager
    def signals(self, *, stop: Iterable[int], wake: Iterable[int]) -> Iterator[None]:
        """Route ``stop`` and ``wake`` signals to this pipe while the block runs (main thread)."""

        def on_stop(_signum: int, _frame: object) -> None:
            self.stop_requested = True  # the only thing a handler does; the pipe has the byte

        def on_wake(_signum: int, _frame: object) -> None:
            return  # the byte in the pipe is the whole message

        previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        previous = {s: signal.signal(s, on_stop) for s in stop}
        previous.update({s: signal.signal(s, on_wake) for s in wake})
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(previous_fd)
