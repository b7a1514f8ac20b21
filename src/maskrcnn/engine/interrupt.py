"""Stopping a run cleanly: SIGINT (Ctrl-C) and SIGTERM (a scheduler, ``kill``, ``docker stop``) become a request
that the training loop honours between iterations, so that it can finish the step in hand and save ``last.pt``.

    with StopSignals() as stop:
        for iteration in ...:
            if stop.signum is not None:   # a signal arrived: save, then leave
                ...

The first signal only records itself and puts the previous handlers back, so a second one acts as it would have
without us (Ctrl-C twice stops at once). Handlers can only be set from the main thread; elsewhere this does nothing
and signals keep their usual effect.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """While active, SIGINT and SIGTERM set ``signum`` (the first one's number) instead of stopping the process."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Nothing but bookkeeping here: printing from a handler can collide with a print in progress.
        if self.signum is None:
            self.signum = signum
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name
