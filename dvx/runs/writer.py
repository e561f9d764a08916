"""The background writer: moves buffered points, system samples and console text from
memory to the run's state directory at least every ``FLUSH_INTERVAL`` seconds
(``protocols/runs.md`` §7), so ``run.log`` never waits for a disk.

Buffers are plain lists: the training thread only appends (atomic under the GIL);
this thread copies the first ``n`` items and deletes exactly those, so an append that
races with a flush lands after them and is taken by the next flush. Nothing is removed
from a buffer until it was written: a failed write (disk full) keeps the points for
the next attempt and warns once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from dvx.runs.media import MediaStore
from dvx.runs.segments import SegmentWriter, batch_stats, calls_to_batch, merge_stats, rows_to_batch

FLUSH_INTERVAL = 0.5
# The thread looks at the buffers this often and writes early once this many calls are
# waiting, so a fast loop's points are encoded while it runs and ``finish`` only has
# the tail left (100,000 buffered calls would otherwise cost it ~100 ms of encoding).
POLL_INTERVAL = 0.01
EAGER_ROWS = 3 * 8192  # the buffer holds three items per call


class Flusher:
    def __init__(self, state_dir: str, rows: list[Any], sys_rows: list[Any], console: Any,
                 warn: Callable[[str, str], None], on_flush: Callable[[], None], next_seq: int = 0) -> None:
        self.state_dir = state_dir
        self.rows = rows
        self.sys_rows = sys_rows
        self.console = console
        self._warn = warn
        self._on_flush = on_flush
        self.metrics = SegmentWriter(os.path.join(state_dir, "metrics"))
        self.media = MediaStore(os.path.join(state_dir, "media"))
        self.system = SegmentWriter(os.path.join(state_dir, "system"))
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats: dict[str, dict[str, Any]] = {}  # segments.batch_stats of every written point
        self.points = 0
        self.last_time: float | None = None
        self.next_seq = next_seq  # the seq of the first call still in ``rows``

    def start(self, interval: float = FLUSH_INTERVAL) -> None:
        self._thread = threading.Thread(target=self._loop, args=(interval,), name="dvx-run-writer",
                                        daemon=True)
        self._thread.start()

    def _loop(self, interval: float) -> None:
        import time

        clock = time.monotonic
        last = clock()
        poll = min(POLL_INTERVAL, interval)
        ok = True
        while not self._stop.wait(poll):
            if clock() - last < interval and (len(self.rows) < EAGER_ROWS or not ok):
                continue  # after a failed write (disk full) retry at the normal pace only
            last = clock()
            try:
                ok = self.flush()
            except Exception as exc:  # never let the thread die: the next round retries
                ok = False
                self._warn("flush", f"could not save logged data: {exc}")

    def flush(self) -> bool:
        """Write what is buffered; True if everything was written."""
        with self.lock:
            ok = True
            for buf, seg, what in ((self.rows, self.metrics, "metrics"),
                                   (self.sys_rows, self.system, "system")):
                n = len(buf)
                if what == "metrics":
                    n -= n % 3  # whole calls only (``extend`` adds a call's three at once)
                if not n:
                    continue
                try:
                    if what == "metrics":
                        batch = calls_to_batch(buf[:n], self.next_seq, self.media)
                    else:
                        batch = rows_to_batch(buf[:n])
                    seg.write(batch)
                except Exception as exc:
                    seg.abandon()  # its tail may be torn: later points go to a new segment
                    self._warn(f"write-{what}", f"could not save {what} ({exc}); DVX keeps the "
                               "points in memory and retries, training goes on")
                    ok = False
                    continue
                del buf[:n]
                if what == "metrics":
                    self.next_seq += n // 3
                    self._account(batch)
            if self.console is not None:
                text = self.console.take()
                if text:
                    try:
                        with open(os.path.join(self.state_dir, "console.log"), "a", encoding="utf-8",
                                  errors="surrogateescape") as f:
                            f.write(text)
                    except OSError as exc:
                        self.console.chunks.insert(0, text)
                        self._warn("write-console", f"could not save console output ({exc})")
                        ok = False
            try:
                self._on_flush()
            except Exception as exc:
                self._warn("write-record", f"could not save the run record ({exc})")
                ok = False
            return ok

    def _account(self, batch: Any) -> None:
        import pyarrow.compute as pc

        self.points += batch.num_rows
        t = pc.max(batch["time"]).as_py()
        self.last_time = t if self.last_time is None else max(self.last_time, t)
        try:
            merge_stats(self.stats, batch_stats(batch))
        except Exception as exc:  # the points are saved; recovery can recompute these
            self._warn("stats", f"could not update the summary ({exc})")

    def stop(self) -> bool:
        """Stop the thread, write what is left and close the segments."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10.0)
        ok = self.flush()
        with self.lock:
            for seg in (self.metrics, self.system):
                try:
                    seg.close()
                except Exception as exc:
                    self._warn("close", f"could not close a segment ({exc})")
                    ok = False
        return ok
