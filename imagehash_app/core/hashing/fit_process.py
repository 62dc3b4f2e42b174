"""A hasher fit in a helper process: training beside a job that must keep its own pace.

On a GPU, indexing is bound by the decode processes, and the main process only feeds them and the
network. A fit on a thread of that process fights it for the GIL (eager PyTorch gives up and
retakes it at every operator): measured on an H200, embedding fell from 194 to 122 photos/s for
as long as a background fit ran, and the fit itself took several times its foreground time. In a
process of its own the fit costs the job one core and nothing else.

Same interface as `FitThread` (done / reports / result / cancel). The child can be started ahead
of its job: loading PyTorch and the CUDA context there takes seconds (more on a machine whose
cores are all decoding), which then pass while the job goes on. The features go to the child in a
file (no pickled copy of a large reservoir through a pipe), the fitted hasher comes back as its
saved files, reports and the outcome as small messages.
"""

from __future__ import annotations

import os
import pickle
import queue
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from imagehash_app.core.child_process import exit_with_parent, spawn_context
from imagehash_app.core.hashing.base import Hasher, StopFn, TrainProgress

# CPU threads of the child's PyTorch and BLAS. Its CPU work beside a GPU fit is light (the ITQ
# rotation of the start; the PCA runs on the GPU), and the decode processes hold every core,
# where spinning thread pools cost more than they give: beside 2 busy processes on 2 cores the
# start (then with its PCA on the CPU) took 1.1 s with 1 thread each, 2.0-2.2 s with the default
# pools, 10-18 s with 2 threads each set explicitly.
CHILD_THREADS = 1
_POLL_S = 0.05  # how often a wait looks at the caller's should_stop and at the child's health
_CANCEL_WAIT_S = 10.0


def _warm_up(device: str) -> None:
    """What costs seconds before a first fit can step: importing PyTorch, the CUDA context and
    cuBLAS, autograd, and the optimizer (its first use imports torch._dynamo: 1.5 s of a 4.3 s
    fit measured here)."""
    import torch
    from threadpoolctl import threadpool_limits

    if CHILD_THREADS:
        torch.set_num_threads(CHILD_THREADS)
        threadpool_limits(CHILD_THREADS, user_api="blas")
    w = torch.ones(8, 8, device=device, requires_grad=True)
    opt = torch.optim.AdamW([w], lr=1e-3)
    (w @ w).sum().backward()
    opt.step()
    float(w.detach().sum())


def _fit_in_child(work: str, jobs, reports, stop, device: str) -> None:
    """The child: load PyTorch (and the GPU) while waiting for its one job, then fit on the
    features in `work` and save the hasher and the features' codes there."""
    folder = Path(work)
    # If the app dies, the folder is removed here: the app cannot do it then.
    exit_with_parent(lambda: shutil.rmtree(folder, ignore_errors=True))
    try:
        began = time.perf_counter()
        _warm_up(device)
        warm_up_s = time.perf_counter() - began
        hasher, seed, handed_at = jobs.get()  # a child that never gets its job is terminated
        began, job_waited_s = time.perf_counter(), max(0.0, time.time() - handed_at)
        X = np.load(folder / "features.npy")
        kwargs = {"device": device} if hasher.trains_on_device else {}
        hasher.fit(X, progress=reports.put, should_stop=stop.is_set, seed=seed, **kwargs)
        np.save(folder / "codes.npy", hasher.encode(X))
        # Where a fit beside the run spent its time (a job handed over during the warm-up waits).
        hasher.meta["metrics"]["fit_process"] = {
            "warm_up_s": round(warm_up_s, 3), "job_waited_s": round(job_waited_s, 3),
            "job_s": round(time.perf_counter() - began, 3),
        }
        hasher.save(folder / "hasher")
        reports.put(("done", None))
    except BaseException as exc:  # the parent raises it (by type name and text if unpicklable)
        try:
            pickle.dumps(exc)  # the queue pickles on a thread of its own, where a failure is lost
        except Exception:
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        reports.put(("error", exc))
    # Deliver every message, then end at once: PyTorch's (and CUDA's) teardown at a normal exit
    # took 0.8 s here, which the parent would wait for.
    reports.close()
    reports.join_thread()
    os._exit(0)


class FitProcess:
    """A child process for one fit: started ahead (`FitProcess(device)`: it loads PyTorch while
    the job goes on), given its work by `start(hasher, X)`; `result()` is (the fitted hasher,
    codes of X)."""

    def __init__(self, device: str = "cpu", should_stop: StopFn | None = None) -> None:
        ctx = spawn_context()
        self._jobs = ctx.Queue()
        self._reports = ctx.Queue()
        self._stop = ctx.Event()
        self._should_stop = should_stop
        self._work = Path(tempfile.mkdtemp(prefix="imagehash-fit-"))
        self._started = False
        self._pending: deque[TrainProgress] = deque()
        self._outcome: tuple[str, object] | None = None
        self._process = ctx.Process(
            target=_fit_in_child, name="hasher-fit",
            args=(str(self._work), self._jobs, self._reports, self._stop, device), daemon=True,
        )
        self._process.start()

    @property
    def started(self) -> bool:
        return self._started

    def start(self, hasher: Hasher, X: np.ndarray, *, seed: int = 0) -> FitProcess:
        """Hand the child its fit (once); returns self."""
        if self.started:
            raise RuntimeError("This fit process already has its job.")
        self._started = True
        np.save(self._work / "features.npy", np.ascontiguousarray(X, np.float32))
        self._jobs.put((hasher, seed, time.time()))
        return self

    def _take(self, timeout: float | None = None) -> None:
        """Move the child's messages into this object: every one already sent, after waiting up to
        `timeout` seconds for the first (None: no wait). Notes a child that died without an
        outcome."""
        if self._should_stop is not None and self._should_stop():
            self._stop.set()
        while self._outcome is None:
            try:
                item = self._reports.get(timeout=timeout) if timeout else self._reports.get_nowait()
            except queue.Empty:
                if not self._process.is_alive():
                    time.sleep(_POLL_S)  # its last message may still be in the pipe
                    if self._reports.empty():
                        self._outcome = ("error", RuntimeError(
                            f"The hasher fit process ended unexpectedly (exit code "
                            f"{self._process.exitcode})."
                        ))
                return
            timeout = None  # then only what is already there
            if isinstance(item, TrainProgress):
                self._pending.append(item)
            else:
                self._outcome = item

    def done(self) -> bool:
        """The fit has ended (finished, failed or stopped); never waits."""
        self._take()
        return self._outcome is not None

    def reports(self) -> Iterator[TrainProgress]:
        """Every report not yet taken, waiting for new ones until the fit ends."""
        while True:
            while self._pending:
                yield self._pending.popleft()
            if self._outcome is not None:
                return
            self._take(_POLL_S)

    def result(self) -> tuple[Hasher, np.ndarray]:
        """Wait for the fit; the fitted hasher and the codes of X, or the error it raised."""
        from imagehash_app.core.hashing import load_hasher

        if not self.started:
            raise RuntimeError("This fit process has no job to wait for.")
        while self._outcome is None:
            self._take(_POLL_S)
        self._pending.clear()  # reports nobody asked for
        try:
            kind, value = self._outcome
            if kind == "error":
                raise value
            return load_hasher(self._work / "hasher"), np.load(self._work / "codes.npy")
        finally:
            self._close()

    def cancel(self) -> None:
        """Ask the fit to stop and wait until it has (a child that does not stop is ended); a
        child that never got its job is ended at once (it may still be loading PyTorch)."""
        self._stop.set()
        if self.started:
            self._process.join(_CANCEL_WAIT_S)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        self._close()

    def _close(self) -> None:
        self._process.join(_CANCEL_WAIT_S)
        self._jobs.close()
        self._reports.close()
        shutil.rmtree(self._work, ignore_errors=True)
