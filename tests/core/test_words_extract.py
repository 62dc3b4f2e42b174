"""Words per photo: folder and file names (separators, camel case, camera names and dates
dropped) and what the file embeds (XMP, IPTC, EXIF), read with Pillow."""

from __future__ import annotations

from pathlib import Path

from photos import make_photo
from words_photos import save_jpeg

from imagehash_app.core.words.embedded import embedded_texts
from imagehash_app.core.words.reading import photo_words
from imagehash_app.core.words.tokens import file_words, folder_words, path_words, words


def test_words_split_on_separators_and_camel_case() -> None:
    assert words("GrandmasGarden") == ["grandmas", "garden"]
    assert words("Grandma's garden") == ["grandmas", "garden"]
    assert words("lisbon_tram-28.final") == ["lisbon", "tram"]
    assert words("São Paulo, Brasil") == ["são", "paulo", "brasil"]
    assert words("the tram and the river") == ["tram", "river"]


def test_camera_names_dates_and_extensions_give_no_words() -> None:
    for name in ("IMG_1234.JPG", "DSC01234.jpg", "PXL_20230101_123456789.jpg", "DSCN0042.JPG",
                 "20190612.jpg", "2019-06-12 14.33.20.jpg", "IMG_20190612_WA0003.jpg",
                 "3fa2b9c0d1.jpg", "0f8fad5b-d9cb-469f-a165-70867728950e.png", "deadbeef0a1b2c.jpg"):
        assert file_words(name) == [], name
    assert file_words("Lisbon tram 2019.jpeg") == ["lisbon", "tram"]
    assert file_words("facade.jpg") == ["facade"]  # hex letters only: a word
    assert file_words("decade2019.jpg") == ["decade"]
    assert folder_words("DCIM/100CANON") == []
    assert folder_words("2019 Lisbon/Trams") == ["lisbon", "trams"]


def test_path_words_separate_folder_and_file() -> None:
    assert path_words("2019 Lisbon/IMG_1234.jpg") == {"folder": ["lisbon"], "file": []}
    assert path_words("beachDay.png") == {"folder": [], "file": ["beach", "day"]}


def test_xmp_keywords_title_and_caption_are_read(tmp_path: Path) -> None:
    path = save_jpeg(make_photo(1), tmp_path / "a.jpg", xmp_keywords=["Tulip", "Spring Garden"],
                     title="Keukenhof", caption="Fields of tulips in April")
    texts = embedded_texts(path)
    assert texts["keyword"] == ["Tulip", "Spring Garden"]
    assert "Keukenhof" in texts["title"]
    assert texts["caption"] == ["Fields of tulips in April"]


def test_iptc_keywords_and_caption_are_read(tmp_path: Path) -> None:
    path = save_jpeg(make_photo(2), tmp_path / "b.jpg", iptc_keywords=["daisy", "meadow"],
                     iptc_caption="A daisy")
    texts = embedded_texts(path)
    assert texts["keyword"] == ["daisy", "meadow"]
    assert texts["caption"] == ["A daisy"]


def test_exif_description_and_user_comment_are_read(tmp_path: Path) -> None:
    path = save_jpeg(make_photo(3), tmp_path / "c.jpg", description="Harbour at dusk",
                     user_comment="ferry to Cacilhas")
    assert embedded_texts(path)["caption"] == ["Harbour at dusk", "ferry to Cacilhas"]


def test_a_photo_without_words_or_unreadable_gives_none(tmp_path: Path) -> None:
    plain = save_jpeg(make_photo(4), tmp_path / "IMG_0001.jpg")
    assert embedded_texts(plain) == {"keyword": [], "title": [], "caption": []}
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    assert embedded_texts(broken) == {"keyword": [], "title": [], "caption": []}
    assert photo_words(tmp_path, "IMG_0001.jpg") == []


def test_photo_words_name_their_source(tmp_path: Path) -> None:
    save_jpeg(make_photo(5), tmp_path / "Lisbon" / "TramRide.jpg", xmp_keywords=["tram", "yellow"])
    got = photo_words(tmp_path, "Lisbon/TramRide.jpg")
    assert ("lisbon", "folder") in got and ("tram", "file") in got and ("ride", "file") in got
    assert ("tram", "keyword") in got and ("yellow", "keyword") in got
