"""fish_classifier/data/outlier_draw.py: which files of the outlier source are unpacked. The draw through the
stages, with the pool after it, is tested in test_outlier_set.py."""

from fish_classifier.data.outlier_draw import OutlierDraw, SourceDraw

NAMES = [f"corpus/train/n02123045/images/{i}.JPEG" for i in range(10)] + [
    "corpus/train/n01443537/images/0.JPEG", "corpus/Val/images/val_0.JPEG", "corpus/wnids.txt", "corpus/README"]


def test_excluded_folders_and_other_files_are_left_out_and_the_rest_drawn_by_the_seed():
    draw = SourceDraw(["n01443537", "val"], photos=4, seed=3)
    kept = draw(NAMES)
    assert len(kept) == 4 and set(kept) <= set(NAMES[:10])  # photos only, outside the excluded folders
    assert (draw.excluded, draw.not_drawn) == (2, 6)  # the goldfish and Val/ (any case); 10 - 4 left in the source
    assert SourceDraw(["n01443537", "val"], photos=4, seed=3)(NAMES) == kept  # the same seed, the same photos
    assert SourceDraw(["n01443537", "val"], photos=4, seed=4)(NAMES) != kept


def test_zero_photos_draws_every_photo_and_a_file_s_own_name_is_no_folder():
    draw = SourceDraw(["*.jpeg"], photos=0, seed=0)
    assert draw(NAMES) == [name for name in NAMES if name.endswith(".JPEG")]
    assert (draw.excluded, draw.not_drawn) == (0, 0)


def test_the_stage_line_says_what_was_drawn_and_what_was_left_out():
    drawn = OutlierDraw(photos=[], skipped=[{"path": "photos/x.jpg", "reason": "cannot be read"}], excluded=2,
                        not_drawn=7)
    assert drawn.lines("corpus.zip") == [
        "0 photos drawn from corpus.zip: 2 left out by data.outlier_exclude, 7 not drawn (data.outlier_photos), "
        "1 files skipped", "  skipped photos/x.jpg: cannot be read"]
    assert drawn.lines("") == ["data.outlier_source is empty: no photos that are no fish drawn"]
