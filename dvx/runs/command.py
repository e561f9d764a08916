"""``dvx run [--name N] [-i INPUT]... [-o OUTPUT]... [--] CMD...``: record any command
as a run (``protocols/runs.md`` §10).

Before the command: each input is verified — tracked and unchanged, or (untracked or
changed by the user) added as ``dvx add`` does — and recorded as an input edge; an
input that does not exist or whose data does not match its pointer (stale, diverged,
missing from the store) refuses the command before it starts. Then the run starts,
the command runs with ``DVX_RUN_ID`` and ``DVX_RUN_ROOT`` set (a Python child calling
``dvx.init()`` joins the run: ``dvx.runs.attach``), its stdout and stderr are tee'd
(to the terminal and the run's console), system metrics are sampled. After a zero
exit each output is added to the store and recorded as an output edge (an output that
does not exist fails the run); a non-zero exit records a ``failed`` run and is the
exit status of ``dvx run``.
"""

from __future__ import annotations

import codecs
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, TextIO

from dvx.errors import DvxError, UsageError
from dvx.repo import Repository

PIPE_READ = 32 * 1024  # bytes per read of the command's output


@dataclass
class CommandRun:
    """What ``dvx run`` did."""

    id: str
    ref: str
    state: str
    exit_code: int
    commit: str | None
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)  # inputs added (untracked or changed)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def verify_inputs(repo: Repository, inputs: list[str]) -> list[str]:
    """Check each input; returns those that must be added (untracked or changed by the
    user). Raises on an input that does not exist or does not match its pointer."""
    from dvx.ops.status import status
    from dvx.pointer import POINTER_SUFFIX

    to_add = []
    for path in inputs:
        rel = repo.relpath(path)
        tracked = os.path.exists(repo.abspath(rel + POINTER_SUFFIX))
        if not tracked:
            if not os.path.lexists(repo.abspath(rel)):
                raise DvxError(f"input {path} does not exist", "check the path")
            to_add.append(path)
            continue
        for st in status(repo, [path]):
            if st.state == "clean":
                continue
            if st.state == "modified":
                to_add.append(path)
                continue
            raise DvxError(f"input {path} is {st.state}" + (f": {st.message}" if st.message else ""),
                           "`dvx checkout` it (or `dvx add` it to record what is there), then retry")
    return to_add


def _pump(fd: int, stream: TextIO, done: threading.Event) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    try:
        while True:
            data = os.read(fd, PIPE_READ)
            if not data:
                break
            text = decoder.decode(data)
            if text:
                stream.write(text)
                stream.flush()
        tail = decoder.decode(b"", final=True)
        if tail:
            stream.write(tail)
            stream.flush()
    except OSError:
        pass
    finally:
        os.close(fd)
        done.set()


def run_command(repo: Repository, argv: list[str], name: str | None = None, inputs: list[str] | None = None,
                outputs: list[str] | None = None, project: str | None = None, tags: Any = None,
                system_metrics_interval: float = 10.0) -> CommandRun:
    """Record ``argv`` as a run in ``repo`` (module docstring)."""
    from dvx.runs.attach import ENV_ID, ENV_ROOT, merge_into
    from dvx.runs.run import init

    if not argv:
        raise UsageError("no command to run", "e.g. dvx run -o model.bin -- ./train.sh")
    inputs, outputs = list(inputs or []), list(outputs or [])
    to_add = verify_inputs(repo, inputs)
    for path in outputs:
        repo.relpath(path)  # inside the repository, or a clear error now
    saved_env = os.environ.pop(ENV_ID, None)  # a `dvx run` inside a `dvx run` records its own run
    try:
        run: Any = init(name=name, project=project, tags=tags, dir=repo.root, capture_output=True,
                        system_metrics_interval=system_metrics_interval)
    finally:
        if saved_env is not None:
            os.environ[ENV_ID] = saved_env
    result = CommandRun(run.id, run.ref, "running", 0, None, added=[repo.relpath(p) for p in to_add])
    with run._finish_lock:
        run._record["command"] = list(argv)
    for path in inputs:
        if run.use_artifact(path) is not None:
            result.inputs.append(repo.relpath(path))
        else:
            result.errors.append(f"input {path} was not recorded")
    env = dict(os.environ, **{ENV_ID: run.id, ENV_ROOT: repo.root})
    env.setdefault("PYTHONUNBUFFERED", "1")  # a Python child's output reaches the console as written
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    old_int = signal.getsignal(signal.SIGINT)
    old_term = signal.getsignal(signal.SIGTERM)
    try:
        proc = subprocess.Popen(argv, stdin=None, stdout=out_w, stderr=err_w, env=env)
    except OSError as exc:
        os.close(out_r)
        os.close(err_r)
        sys.stderr.write(f"dvx run: cannot start {argv[0]}: {exc.strerror}\n")
        result.exit_code = 127 if isinstance(exc, FileNotFoundError) else 126
        run.finish(result.exit_code)
        result.state, result.commit = run.state, run.commit
        return result
    finally:
        os.close(out_w)
        os.close(err_w)
    sampler = getattr(run, "_sampler", None)
    if sampler is not None and getattr(sampler, "_psutil", None) is not None:
        try:  # process.* metrics of the command, not of `dvx run`
            sampler._proc = sampler._psutil.Process(proc.pid)
            sampler._proc.cpu_percent(None)
        except Exception:
            pass
    done = [threading.Event(), threading.Event()]
    pumps = [threading.Thread(target=_pump, args=(fd, stream, ev), daemon=True)
             for fd, stream, ev in ((out_r, sys.stdout, done[0]), (err_r, sys.stderr, done[1]))]
    for t in pumps:
        t.start()
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:  # Ctrl-C reaches the command (same process group); SIGTERM is passed on
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum))
    try:
        code = proc.wait()
        for t in pumps:
            t.join()
    finally:
        if in_main:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)
    result.exit_code = code if code >= 0 else 128 - code
    merge_into(run)
    if result.exit_code == 0:
        for path in outputs:
            if not os.path.lexists(repo.abspath(repo.relpath(path))):
                result.errors.append(f"output {path} was not produced by the command")
            elif run.log_artifact(path, type=None) is not None:
                result.outputs.append(repo.relpath(path))
            else:
                result.errors.append(f"output {path} could not be added")
        if result.errors:
            result.exit_code = 1
    run.finish(result.exit_code)
    result.state, result.commit = run.state, run.commit
    return result
