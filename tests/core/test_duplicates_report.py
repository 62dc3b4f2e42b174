"""The keeper rule and the regrouping of scored pairs (pure: no photo is read)."""

from pathlib import Path

import pytest

from imagehash_app.core.duplicates.report import (
    CopyPhoto,
    DuplicateReport,
    KeeperRule,
    ScoredPair,
)


def photo(name: str, w: int = 100, h: int = 100, size: int = 10_000, fmt: str = "JPEG",
          modified: float = 1000.0, **kw) -> CopyPhoto:
    return CopyPhoto(Path(f"/p/{name}"), size, w, h, fmt, modified, **kw)


def test_rule_prefers_pixels_then_compression_then_format_then_date():
    rule = KeeperRule()
    assert rule.choose([photo("small", 50, 50), photo("big")]).path.name == "big"
    assert rule.choose([photo("q70", quality=70), photo("q95", quality=95)]).path.name == "q95"
    assert rule.choose([photo("thin", size=5_000), photo("fat", size=20_000)]).path.name == "fat"
    assert rule.choose([photo("png", fmt="PNG"), photo("heic", fmt="HEIF")]).path.name == "heic"
    assert rule.choose([photo("new", modified=9.0), photo("old", modified=1.0)]).path.name == "old"
    assert rule.choose([photo("new", taken=1.0, modified=9.0),
                        photo("old", modified=2.0)]).path.name == "new"


def test_rule_order_is_the_users_and_reference_photos_always_win():
    by_date = KeeperRule.parse("date, pixels")
    assert by_date.choose([photo("big", modified=5.0), photo("small", 10, 10, modified=1.0)]
                          ).path.name == "small"
    assert KeeperRule().choose([photo("big"), photo("ref", 10, 10, reference=True)]
                               ).path.name == "ref"
    assert str(by_date) == "date,pixels"
    assert by_date.describe().startswith("Keep the older photo")


@pytest.mark.parametrize("text", ["pixels,size", "", "date,date"])
def test_rule_rejects_what_it_does_not_know(text):
    with pytest.raises(ValueError, match="comma-separated list"):
        KeeperRule.parse(text)


def test_groups_follow_the_threshold_and_keep_exactly_one():
    photos = [photo("a"), photo("b", 50, 50), photo("c", 40, 40), photo("d"), photo("e")]
    pairs = [ScoredPair(0, 1, 0.95, "rot90"), ScoredPair(1, 2, 0.80), ScoredPair(3, 4, 0.70)]
    report = DuplicateReport.build(photos, pairs, threshold=0.9, floor=0.5)
    assert [sorted(p.path.name for p in g.photos) for g in report.groups] == [["a", "b"]]
    group = report.groups[0]
    assert group.keeper.path.name == "a" and sum(p.keep for p in group.photos) == 1
    assert group.photos[1].transform == "rot90" and group.photos[1].score == 0.95
    lower = report.at(0.75)
    assert [len(g.photos) for g in lower.groups] == [3]
    assert lower.groups[0].removable == lower.groups[0].photos[1:]
    assert [len(g.photos) for g in report.at(0.6).groups] == [3, 2]
    with pytest.raises(ValueError, match="cannot go below"):
        report.at(0.4)


def test_transform_is_inverted_when_the_keeper_is_the_second_of_the_pair():
    photos = [photo("small", 50, 50), photo("big")]
    report = DuplicateReport.build(photos, [ScoredPair(0, 1, 0.99, "rot90")], threshold=0.9,
                                   floor=0.9)
    (group,) = report.groups
    assert group.keeper.path.name == "big"
    assert group.photos[1].transform == "rot270"


def test_not_duplicates_and_reference_photos_are_never_removable():
    photos = [photo("a"), photo("b"), photo("ref", 10, 10, reference=True), photo("c")]
    pairs = [ScoredPair(0, 1, 0.99), ScoredPair(2, 3, 0.99), ScoredPair(0, 3, 0.2)]
    skip = frozenset({frozenset({Path("/p/a"), Path("/p/b")})})
    report = DuplicateReport.build(photos, pairs, threshold=0.9, floor=0.1, not_duplicates=skip)
    (group,) = report.groups
    assert group.keeper.path.name == "ref"
    assert [p.path.name for p in group.removable] == ["c"]
    kept_c = group.keeping(Path("/p/c"))
    assert kept_c.keeper.path.name == "c" and kept_c.removable == ()
    assert report.reclaimable_bytes == 10_000
