from PIL import Image

from fish_classifier.contact_sheet import draw_contact_sheet, side_by_side, thumbnail


def test_a_thumbnail_fits_the_square_keeping_the_shape_and_never_grows(tmp_path):
    Image.new("RGB", (400, 300), "red").save(tmp_path / "big.png")
    Image.new("RGB", (40, 30), "red").save(tmp_path / "small.png")
    assert thumbnail(tmp_path / "big.png", size=160).size == (160, 120)
    assert thumbnail(tmp_path / "small.png", size=160).size == (40, 30)


def test_side_by_side_puts_both_photos_on_one_white_strip():
    strip = side_by_side(Image.new("RGB", (30, 20), "red"), Image.new("RGB", (40, 10), "blue"), gap=5)
    assert strip.size == (75, 20)
    assert strip.getpixel((0, 0)) == (255, 0, 0)
    assert strip.getpixel((32, 10)) == (255, 255, 255)  # the gap
    assert strip.getpixel((35, 10)) == (0, 0, 255)
    assert strip.getpixel((35, 0)) == (255, 255, 255)  # above the shorter photo, centred


def test_the_sheet_has_a_row_per_columns_photos_and_keeps_its_words_as_png_text(tmp_path):
    photos = [(Image.new("RGB", (30, 30), "red"), f"photo {i}") for i in range(7)]
    draw_contact_sheet(photos, tmp_path / "sheet.png", "Seven", columns=6, empty_message="none")
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.size == (1560, 660)  # 6 columns of 2.6 inches; 2 rows of 3.0 and the title's 0.6
        assert sheet.text["Title"] == "Seven"
        assert sheet.text["Description"] == "\n\n".join(f"photo {i}" for i in range(7))
