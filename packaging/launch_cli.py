"""Frozen entry point of the `imagehash-app` command (console executable)."""

from imagehash_app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
