"""Command-line face of the engine (placeholder until the engine lands)."""


def main(argv=None) -> int:
    print("imagehash-app: not built yet")
    return 0
