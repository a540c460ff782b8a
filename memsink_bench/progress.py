"""Progress of long work: a tqdm bar on a terminal, plain lines in logs.

tqdm hides itself when stderr is not a terminal (`disable=None`), so a job whose output goes to a
file, `nohup` or a cluster log showed nothing until the end. Here a non-terminal stream gets one
plain line every ~10% of the work or every 30 s, whichever comes first, and the same lines go to
the `memsink_bench` logger (at INFO) for users who configure logging.
"""

from __future__ import annotations

import logging
import sys
import time

LOGGER = logging.getLogger("memsink_bench")
LINE_FRACTION = 0.1      # a plain line every 10% of the total...
LINE_SECONDS = 30.0      # ...or every 30 s


class LineProgress:
    """The part of tqdm's interface the project uses, written as plain lines."""

    def __init__(self, total: int, description: str, unit: str, initial: int = 0, stream=None,
                 clock=time.monotonic):
        self.total, self.description, self.unit = total, description, unit
        self.n, self.stream, self.clock = initial, stream or sys.stderr, clock
        self.postfix = ""
        self.started = self.last_time = clock()
        self.last_n = initial
        self.step = max(1, int(total * LINE_FRACTION)) if total else 1

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n - self.last_n >= self.step or self.clock() - self.last_time >= LINE_SECONDS:
            self._line()

    def set_postfix(self, **values) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if self.n != self.last_n:
            self._line()

    def _line(self) -> None:
        elapsed = self.clock() - self.started
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        text = (f"{self.description}: {self.n}/{self.total} {self.unit}s{share} in {elapsed:.0f}s"
                + (f" {self.postfix}" if self.postfix else ""))
        print(text, file=self.stream, flush=True)
        LOGGER.info(text)
        self.last_n, self.last_time = self.n, self.clock()


class _Silent:
    n = 0

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **values) -> None:
        pass

    def close(self) -> None:
        pass


def progress(total: int, description: str, unit: str, *, enabled: bool = True, initial: int = 0,
             leave: bool = True):
    """A tqdm bar on a terminal, `LineProgress` elsewhere, nothing when disabled (`--quiet`)."""
    if not enabled:
        return _Silent()
    if not sys.stderr.isatty():
        return LineProgress(total, description, unit, initial=initial)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=description, unit=unit, file=sys.stderr, dynamic_ncols=True,
                mininterval=1.0, leave=leave)
