"""Errors the engine raises on purpose. Each message is written for a person: what happened, what to do."""

from __future__ import annotations


class ImagehashError(Exception):
    """Base of every error the engine raises on purpose; the CLI and GUI show its message as is."""


class LibraryLockedError(ImagehashError):
    """Another process holds the library's writer lock."""


class WeightsUnavailableError(ImagehashError):
    """Pretrained backbone weights could not be found or downloaded."""


class ImageDecodeError(ImagehashError):
    """A file could not be decoded as an image; `reason` is the short text recorded for it."""

    def __init__(self, reason: str, path: object | None = None) -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path is not None else reason)


class IncompatibleModelError(ImagehashError):
    """A saved hasher does not match the library (backbone or feature size differ)."""


class CancelledError(ImagehashError):
    """A long job stopped because the caller asked it to."""
