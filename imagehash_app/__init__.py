"""imagehash_app: private, local photo similarity search with learned binary codes."""

__version__ = "0.1.0"
