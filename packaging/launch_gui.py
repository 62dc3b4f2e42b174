"""Frozen entry point of the windowed executable `imagehash-app-gui` (no console window)."""

from imagehash_app.gui.app import main

if __name__ == "__main__":
    raise SystemExit(main())
