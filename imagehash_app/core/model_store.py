"""Where hasher versions live on disk, and which of them a library keeps.

Shared by the indexer (automatic training) and the fine-tune lifecycle, so that both prune the same
way and never drop the active version or one a resumable job still needs.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from imagehash_app.core.catalog import Catalog, ModelRow

MODELS_DIR = "models"
GRAPH_DIR = "graph"
KEEP_MODELS = 2  # the active hasher version and the one before it (instant roll back)
FINETUNE_PENDING_KEY = "finetune_pending"  # meta key (JSON) of a fine-tune whose re-encode is unfinished


def remove_model_files(root: Path, model: ModelRow) -> None:
    """Delete a dropped model's weights and graph (both rebuildable or no longer wanted)."""
    shutil.rmtree(root / model.dir, ignore_errors=True)
    for path in (root / GRAPH_DIR).glob(f"{model.id}.*"):
        path.unlink(missing_ok=True)


def prune_models(
    cat: Catalog, root: Path, keep: int = KEEP_MODELS, protect: Sequence[int] = ()
) -> list[int]:
    """Drop versions beyond the newest `keep` (never the active one nor `protect`)."""
    models = cat.models()
    safe = {m.id for m in models if m.active} | set(protect)
    kept: list[ModelRow] = [m for m in models if m.id in safe]
    for m in reversed(models):
        if len(kept) >= keep:
            break
        if m.id not in safe:
            kept.append(m)
    drop = [m for m in models if m not in kept]
    if drop:
        with cat.transaction():
            for m in drop:
                cat.delete_model(m.id)
        for m in drop:
            remove_model_files(root, m)
    return [m.id for m in drop]
