"""The headless engine. Nothing in this package imports Qt."""
