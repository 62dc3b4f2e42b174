"""embedding.py: batches in input order, per-file failures with reasons, clean stop."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from processes import running

from imagehash_app.core.backbone import load_backbone
from imagehash_app.core.embedding import EmbeddedBatch, decode_for, iter_embeddings


@pytest.fixture(scope="module")
def tiny():
    return load_backbone("tiny", "none")


@pytest.fixture()
def folder(tmp_path):
    """Ten photos with two bad files among them (empty, not an image)."""
    rng = np.random.default_rng(7)
    paths = []
    for i in range(12):
        p = tmp_path / f"{i:02d}.jpg"
        if i == 3:
            p.write_bytes(b"")
        elif i == 8:
            p.write_text("not a photo")
        else:
            arr = rng.integers(0, 255, (60 + i, 90, 3), dtype=np.uint8)
            Image.fromarray(arr).save(p, quality=90)
        paths.append(p)
    return paths


def test_batches_in_order_with_failures(tiny, folder):
    batches = list(iter_embeddings(folder, tiny, batch_size=5, workers=3))
    assert [len(b.paths) + len(b.failures) for b in batches] == [5, 5, 2]
    assert all(isinstance(b, EmbeddedBatch) for b in batches)
    ok = [p for b in batches for p in b.paths]
    assert ok == [p for i, p in enumerate(folder) if i not in (3, 8)]
    failures = dict(f for b in batches for f in b.failures)
    assert failures == {folder[3]: "empty file", folder[8]: "not an image"}
    feats = np.concatenate([b.features for b in batches])
    assert feats.shape == (10, 64) and feats.dtype == np.float32
    direct = tiny.embed(np.stack([decode_for(p, tiny) for p in ok]))
    np.testing.assert_allclose(feats, direct, atol=1e-5)


def test_batch_of_only_failures(tiny, tmp_path):
    bad = [tmp_path / "a.jpg", tmp_path / "b.png"]
    bad[0].write_bytes(b"")
    (batch,) = iter_embeddings([*bad], tiny, batch_size=8)
    assert batch.paths == [] and batch.features.shape == (0, 64)
    assert [r for _, r in batch.failures] == ["empty file", "vanished"]


def test_should_stop_and_close(tiny, folder):
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 1

    batches = list(iter_embeddings(folder, tiny, batch_size=4, workers=2, should_stop=stop))
    assert len(batches) == 1
    gen = iter_embeddings(folder, tiny, batch_size=2, workers=2)
    first = next(gen)
    gen.close()  # must not hang with decodes still queued
    assert len(first.paths) == 2
    assert list(iter_embeddings([], tiny)) == []


@pytest.mark.parametrize("chunk", [1, 3])
def test_process_workers_give_the_same_batches_as_threads(tiny, folder, chunk):
    threads = list(iter_embeddings(folder, tiny, batch_size=5, workers=2, processes=False))
    procs = list(
        iter_embeddings(folder, tiny, batch_size=5, workers=2, processes=True, chunk=chunk)
    )
    assert [b.paths for b in procs] == [b.paths for b in threads]
    assert [b.failures for b in procs] == [b.failures for b in threads]
    assert [b.facts for b in procs] == [b.facts for b in threads]
    for p, t in zip(procs, threads, strict=True):
        np.testing.assert_array_equal(p.features, t.features)


@pytest.mark.skipif(not hasattr(os, "nice"), reason="no process niceness here")
def test_decode_processes_yield_the_cores_to_the_app() -> None:
    from imagehash_app.core.embedding import DECODE_NICENESS, PROCESS_POOLS

    theirs = PROCESS_POOLS.get(2).submit(os.nice, 0).result()
    assert theirs == min(os.nice(0) + DECODE_NICENESS, 19)


def test_a_killed_decode_process_loses_no_photo(tiny, folder):
    """Decode processes dying (as a codec segfault would kill them) break the shared pool; the next
    run's decodes go to a fresh pool, or are decoded again one at a time, and none is lost. They are
    killed while idle: a process killed halfway through sending a result can hang the pool's
    manager thread (CPython's), while a codec crash happens before anything is sent."""
    expected = list(iter_embeddings(folder, tiny, batch_size=4, workers=2, processes=False))
    list(iter_embeddings(folder, tiny, batch_size=4, workers=2, processes=True, chunk=2))
    workers = [p for p in multiprocessing.active_children() if p.pid != os.getpid()]
    assert workers
    for proc in workers:
        os.kill(proc.pid, signal.SIGKILL)
    batches = list(iter_embeddings(folder, tiny, batch_size=4, workers=2, processes=True, chunk=2))
    assert [b.paths for b in batches] == [b.paths for b in expected]
    assert [b.failures for b in batches] == [b.failures for b in expected]  # only the two bad files
    np.testing.assert_array_equal(
        np.concatenate([b.features for b in batches]), np.concatenate([b.features for b in expected])
    )


KILLED_APP = """
import multiprocessing, sys, time
from pathlib import Path
from imagehash_app.core.backbone import BACKBONES
from imagehash_app.core.embedding import PROCESS_POOLS, _decode_chunk
if __name__ == "__main__":
    pool = PROCESS_POOLS.get(2)
    prep = BACKBONES["tiny"].preprocessing()
    tasks = [pool.submit(_decode_chunk, [Path(p)], prep, 72) for p in sys.argv[1:]]
    [t.result() for t in tasks]
    print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
    time.sleep(120)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_decode_processes_end_when_the_app_is_killed(tmp_path, folder):
    script = tmp_path / "app.py"
    script.write_text(KILLED_APP)
    app = subprocess.Popen(
        [sys.executable, str(script), *map(str, folder[:4])], stdout=subprocess.PIPE, text=True
    )
    try:
        workers = [int(pid) for pid in app.stdout.readline().split()]
        assert workers and all(running(pid) for pid in workers)
    finally:
        app.kill()
        app.wait()
    deadline = time.monotonic() + 20
    while any(running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(running(pid) for pid in workers)
