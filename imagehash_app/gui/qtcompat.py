"""Work around a PySide6 6.12.0 reference-counting bug in `SignalInstance.emit()`.

On PySide6 6.12.0 (CPython 3.11) `emit()` returns `True` without taking a reference, so every
Python-side emit drops one reference to the `True` singleton; after a few hundred emits CPython
aborts with "Fatal Python error: bool_dealloc". `emit(signal, *args)` makes the emit and, only when
the probe below saw the bug at import, gives the returned bool its missing reference. On fixed
versions (and where bools are immortal) it is a plain emit.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

from PySide6.QtCore import QObject, Signal, SignalInstance


class _Probe(QObject):
    ping = Signal()


def _emit_steals_a_reference() -> bool:
    probe = _Probe()
    before = sys.getrefcount(True)
    result = probe.ping.emit()
    del result
    stolen = sys.getrefcount(True) < before
    if stolen:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(True))  # repay the probe's own emit
    return stolen


EMIT_BUG = _emit_steals_a_reference()


def emit(signal: SignalInstance, *args: Any) -> None:
    """`signal.emit(*args)`, safe on PySide6 versions whose emit under-counts its return value."""
    result = signal.emit(*args)
    if EMIT_BUG and isinstance(result, bool):
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(result))
