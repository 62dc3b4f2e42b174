"""Search answers during the first index, before the library's first hasher exists: it ranks the
photos indexed so far by the features the indexer stored for them (the reservoir)."""

from __future__ import annotations

from pathlib import Path

from imagehash_app.core.library import Library


def _indexed(reader: Library) -> int:
    return reader.status().indexed


def test_search_mid_first_index_answers_from_the_photos_indexed_so_far(
    tmp_path: Path, photo_folder, tiny_settings
) -> None:
    tiny_settings.train_min = 10_000  # no hasher until the end of the run (the ITQ fallback)
    path = tmp_path / "library"
    writer = Library.open(path, settings=tiny_settings)
    writer.add_folder(photo_folder.root)
    total = len(photo_folder.all)
    reader = Library.open(path, read_only=True)
    try:
        run = writer.update(None)
        mid = None
        for event in run:
            if event.phase == "embed" and 0 < event.done < event.total:
                mid = event
                break
        assert mid is not None, "the run should stop between batches"
        so_far = _indexed(reader)
        assert 0 < so_far < total
        assert reader.status().model is None  # no hasher yet
        query = photo_folder.originals[0]
        answer = reader.search([query], top_k=100).check()
        hits = answer.responses[0].results
        assert len(hits) == so_far  # every photo indexed so far, and only those
        assert all(h.hamming == -1 for h in hits)  # ranked by stored features, no code yet
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        if hits[0].path == query.resolve():  # the query was in the first batch: it comes first
            assert hits[0].score > 0.99
        # A photo from outside the library is answered the same way.
        outside = reader.search([photo_folder.unrelated[-1]], top_k=3).check()
        assert len(outside.responses[0].results) == 3

        list(run)  # the rest of the run trains the first hasher
        assert reader.status().model is not None
        later = reader.search([query], top_k=100).check().responses[0].results
        assert len(later) == total - len(reader.skipped())
        assert later[0].path == query.resolve() and later[0].hamming == 0
    finally:
        reader.close()
        writer.close()
