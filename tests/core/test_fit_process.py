"""A hasher fit in its own process: the same hasher and codes as in-process, reports relayed,
errors raised in the caller, a stop honoured, a dead child reported."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from processes import running

from imagehash_app.core.errors import CancelledError
from imagehash_app.core.hashing import make_hasher
from imagehash_app.core.hashing.baselines import ITQHasher
from imagehash_app.core.hashing.fit_process import FitProcess

URPH_SMALL = {"epochs": 3, "hidden": 16, "decoder_hidden": 16, "input_dim": 16}


def features(n: int = 48, d: int = 24, seed: int = 3) -> np.ndarray:
    X = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


class FailingHasher(ITQHasher):
    """Module-level, so that the spawned child can unpickle it."""

    def fit(self, X, **kwargs):
        raise ValueError("no good features")


class SlowHasher(ITQHasher):
    """Trains until told to stop, checking as real fits do."""

    def fit(self, X, *, should_stop=None, **kwargs):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if should_stop is not None and should_stop():
                raise CancelledError("stopped")
            time.sleep(0.01)
        raise AssertionError("never told to stop")


class ThreadReport(ITQHasher):
    """Reports the child's thread pools, as an error (the one message a fit always returns)."""

    def fit(self, X, **kwargs):
        import torch
        from threadpoolctl import threadpool_info

        blas = sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
        raise ValueError(f"torch {torch.get_num_threads()} blas {blas}")


def test_the_child_keeps_its_thread_pools_small() -> None:
    """Beside decode processes on every core, spinning pools slow a fit down (fit_process.py)."""
    X = features()
    with pytest.raises(ValueError, match=r"torch 1 blas \[1\]"):
        FitProcess().start(ThreadReport(16, X.shape[1]), X).result()


def test_the_child_fits_the_hasher_the_caller_would_have_fitted() -> None:
    X = features()
    job = FitProcess().start(make_hasher("itq", 16, X.shape[1]), X, seed=5)
    hasher, codes = job.result()
    here = make_hasher("itq", 16, X.shape[1]).fit(X, seed=5)
    np.testing.assert_array_equal(codes, here.encode(X))
    np.testing.assert_array_equal(hasher.encode(X), codes)  # the saved hasher came back whole
    assert not job._work.exists()  # its scratch folder is gone


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_reports_come_through_and_the_urph_hasher_decodes(device: str) -> None:
    X = features()
    job = FitProcess(device).start(make_hasher("urph", 16, X.shape[1], **URPH_SMALL), X, seed=1)
    reports = list(job.reports())
    assert [r.epoch for r in reports] == [1, 2, 3] and all(r.epochs == 3 for r in reports)
    assert job.done()
    hasher, codes = job.result()
    assert codes.shape == (len(X), 1)
    decoded = hasher.decode(codes)
    assert decoded.shape == X.shape
    np.testing.assert_allclose(np.linalg.norm(decoded, axis=1), 1.0, rtol=1e-4)
    # Where the time went comes back in the metadata: the child's and the fit's own parts.
    metrics = hasher.meta["metrics"]
    assert set(metrics["fit_process"]) == {"warm_up_s", "job_waited_s", "job_s"}
    assert metrics["fit_process"]["warm_up_s"] > 0
    assert metrics["fit_process"]["job_s"] >= sum(metrics["fit_parts_s"].values()) > 0


def test_an_error_in_the_child_is_raised_by_result() -> None:
    X = features()
    job = FitProcess().start(FailingHasher(16, X.shape[1]), X)
    with pytest.raises(ValueError, match="no good features"):
        job.result()


def test_the_callers_stop_reaches_the_child() -> None:
    X = features()
    stop = {"now": False}
    job = FitProcess(should_stop=lambda: stop["now"]).start(SlowHasher(16, X.shape[1]), X)
    time.sleep(0.5)
    assert not job.done()
    stop["now"] = True
    started = time.monotonic()
    with pytest.raises(CancelledError):
        job.result()
    assert time.monotonic() - started < 30  # not the 60 s the fit would run


def test_cancel_ends_the_child_and_cleans_up() -> None:
    X = features()
    job = FitProcess().start(SlowHasher(16, X.shape[1]), X)
    job.cancel()
    assert not job._process.is_alive() and not job._work.exists()


def test_a_child_started_ahead_waits_for_its_job_or_ends_unused() -> None:
    X = features()
    ahead = FitProcess()
    time.sleep(0.5)
    assert ahead._process.is_alive() and not ahead.done()
    _, codes = ahead.start(make_hasher("itq", 16, X.shape[1]), X, seed=5).result()
    assert codes.shape == (len(X), 1)
    with pytest.raises(RuntimeError, match="already has its job"):
        ahead.start(make_hasher("itq", 16, X.shape[1]), X)
    unused = FitProcess()
    with pytest.raises(RuntimeError, match="no job"):
        unused.result()
    started = time.monotonic()
    unused.cancel()
    assert not unused._process.is_alive() and time.monotonic() - started < 2
    assert not unused._work.exists()


def test_a_killed_child_is_reported_not_waited_for() -> None:
    X = features()
    job = FitProcess().start(SlowHasher(16, X.shape[1]), X)
    time.sleep(0.5)
    os.kill(job._process.pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="ended unexpectedly"):
        job.result()


KILLED_APP = """
import sys, time
import numpy as np
from imagehash_app.core.hashing.baselines import ITQHasher
from imagehash_app.core.hashing.fit_process import FitProcess

class Endless(ITQHasher):
    def fit(self, X, **kwargs):
        while True:
            time.sleep(0.05)

if __name__ == "__main__":
    job = FitProcess().start(Endless(8, 4), np.ones((4, 4), np.float32))
    while not (job._work / "features.npy").exists():
        time.sleep(0.05)
    print(job._process.pid, job._work, flush=True)
    time.sleep(120)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_fit_process_ends_and_cleans_up_when_the_app_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(KILLED_APP)
    app = subprocess.Popen(  # its stderr: the resource tracker's note on what the kill left
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        pid, work = app.stdout.readline().split()
        assert running(int(pid)) and Path(work).is_dir()
    finally:
        app.kill()
        app.wait()
    deadline = time.monotonic() + 20
    while (running(int(pid)) or Path(work).exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(int(pid)) and not Path(work).exists()
