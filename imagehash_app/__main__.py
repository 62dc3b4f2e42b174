"""`python -m imagehash_app` is the same as the `imagehash-app` command."""

from imagehash_app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
