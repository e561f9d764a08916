"""System metrics, sampled in a thread (``protocols/runs.md`` §5): psutil for CPU,
memory, disk and network; NVML (nvidia-ml-py) per GPU when a GPU and its driver are
present, silently absent otherwise."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any


class SystemSampler:
    def __init__(self, interval: float, sink: list[tuple[int, int, float, dict[str, Any]]]) -> None:
        self.interval = max(0.05, float(interval))
        self._sink = sink
        self._stop = threading.Event()
        self._n = 0
        self._thread: threading.Thread | None = None
        self._psutil: Any = None
        self._proc: Any = None
        self._base: dict[str, float] = {}
        self._nvml: Any = None
        self._gpus: list[Any] = []

    def start(self) -> None:
        try:
            import psutil

            self._psutil = psutil
            self._proc = psutil.Process()
            self._proc.cpu_percent(None)  # the first call only primes the counters
            psutil.cpu_percent(None)
            self._base = self._counters()
        except Exception:
            self._psutil = None
        self._thread = threading.Thread(target=self._loop, name="dvx-run-sysmetrics", daemon=True)
        self._thread.start()

    def _counters(self) -> dict[str, float]:
        out: dict[str, float] = {}
        ps = self._psutil
        try:
            d = ps.disk_io_counters()
            if d is not None:
                out["disk.read_bytes"], out["disk.write_bytes"] = d.read_bytes, d.write_bytes
        except Exception:
            pass
        try:
            n = ps.net_io_counters()
            if n is not None:
                out["net.sent_bytes"], out["net.recv_bytes"] = n.bytes_sent, n.bytes_recv
        except Exception:
            pass
        return out

    def _init_gpus(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            self._gpus = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self._nvml = pynvml
        except Exception:  # no driver, no GPU, no library: no GPU metrics
            self._nvml = None

    def sample(self) -> None:
        values: dict[str, Any] = {}
        ps = self._psutil
        if ps is not None:
            try:
                values["cpu.percent"] = float(ps.cpu_percent(None))
                vm = ps.virtual_memory()
                values["memory.used_bytes"] = int(vm.total - vm.available)
                values["memory.percent"] = float(vm.percent)
                values["process.cpu_percent"] = float(self._proc.cpu_percent(None))
                values["process.rss_bytes"] = int(self._proc.memory_info().rss)
            except Exception:
                pass
            for k, v in self._counters().items():
                values[k] = int(v - self._base.get(k, 0))
        nv = self._nvml
        for i, h in enumerate(self._gpus if nv is not None else ()):
            for key, fn in (("util_percent", lambda h: float(nv.nvmlDeviceGetUtilizationRates(h).gpu)),
                            ("memory_used_bytes", lambda h: int(nv.nvmlDeviceGetMemoryInfo(h).used)),
                            ("temperature_c", lambda h: float(nv.nvmlDeviceGetTemperature(h, 0))),
                            ("power_w", lambda h: nv.nvmlDeviceGetPowerUsage(h) / 1000.0)):
                with contextlib.suppress(Exception):
                    values[f"gpu.{i}.{key}"] = fn(h)
        if values:
            self._sink.append((self._n, self._n, time.time(), values))
            self._n += 1

    def _loop(self) -> None:
        self._init_gpus()
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):  # a sampler must never take the run down
                self.sample()

    def stop(self, final_sample: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if final_sample:
            with contextlib.suppress(Exception):
                self.sample()
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            self._nvml = None
