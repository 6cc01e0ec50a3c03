import pandas as pd
import pytest

from fish_classifier.data.manifest import (
    MANIFEST_COLUMNS,
    DatasetError,
    display_name,
    example_photos,
    find_classes,
    read_classes,
    read_manifest,
    scored_split,
    write_classes,
    write_manifest,
)

# Every class folder of the real dataset, with the name the rule gives it.
REAL_CLASSES = {
    "animal fish": "Animal fish",
    "animal fish bass": "Bass",
    "fish sea_food black_sea_sprat": "Black sea sprat",
    "fish sea_food gilt_head_bream": "Gilt head bream",
    "fish sea_food hourse_mackerel": "Hourse mackerel",
    "fish sea_food red_mullet": "Red mullet",
    "fish sea_food red_sea_bream": "Red sea bream",
    "fish sea_food sea_bass": "Sea bass",
    "fish sea_food shrimp": "Shrimp",
    "fish sea_food striped_red_mullet": "Striped red mullet",
    "fish sea_food trout": "Trout",
}


@pytest.mark.parametrize(("label", "expected"), REAL_CLASSES.items())
def test_display_name_drops_the_category_words(label, expected):
    assert display_name(label) == expected


def test_display_name_override_wins():
    overrides = {"fish sea_food hourse_mackerel": "Horse mackerel"}
    assert display_name("fish sea_food hourse_mackerel", overrides) == "Horse mackerel"
    assert display_name("fish sea_food trout", overrides) == "Trout"


def test_display_name_of_a_plain_folder_name():
    assert display_name("salmon") == "Salmon"
    assert display_name("Atlantic_cod") == "Atlantic cod"


def test_classes_come_sorted_from_the_train_folders(make_image_tree, tmp_path):
    raw = make_image_tree(classes=["fish sea_food trout", "animal fish bass", "animal fish"])
    (raw / "train" / ".ipynb_checkpoints").mkdir()
    classes = find_classes(raw)
    assert classes == [
        {"label": "animal fish", "display": "Animal fish"},
        {"label": "animal fish bass", "display": "Bass"},
        {"label": "fish sea_food trout", "display": "Trout"},
    ]


def test_folders_equal_after_unicode_normalisation_are_an_error_naming_both(make_image_tree, tmp_path):
    composed, decomposed = "fish sea_food dor\u00e9e", "fish sea_food dore\u0301e"  # both show as 'dorée'
    raw = make_image_tree(classes=[composed, decomposed])
    with pytest.raises(DatasetError) as caught:
        find_classes(raw)
    assert str(caught.value) == (
        f"class folders 'fish sea_food dore\\u0301e' and 'fish sea_food dor\\xe9e' in {raw / 'train'} are one name "
        "in two Unicode forms; rename or merge them so that the class has one folder"
    )


def test_a_class_only_in_test_is_an_error_naming_it(make_image_tree):
    raw = make_image_tree(classes=["animal fish"])
    (raw / "test" / "fish sea_food shrimp").mkdir()
    with pytest.raises(DatasetError, match=r"'fish sea_food shrimp' is in test/ but not in train/"):
        find_classes(raw)


def test_a_missing_split_is_an_error(make_image_tree):
    raw = make_image_tree(counts={"train": 1, "test": 1})
    with pytest.raises(DatasetError, match=r"val is missing"):
        find_classes(raw)


def test_colliding_display_names_are_an_error(make_image_tree):
    raw = make_image_tree(classes=["fish sea_food trout", "animal fish trout"])
    with pytest.raises(DatasetError, match=r"'animal fish trout' and 'fish sea_food trout' both get .*'Trout'"):
        find_classes(raw)
    classes = find_classes(raw, {"animal fish trout": "River trout"})
    assert [c["display"] for c in classes] == ["River trout", "Trout"]


def test_manifest_and_classes_round_trip(tmp_path):
    manifest = pd.DataFrame(
        [
            ["data/prepared/train/animal fish/001.jpg", "train", "animal fish", "ab" * 32, 32, 24, False, "",
             "dataset"],
            ["data/prepared/train/animal fish/feedback-efef.jpg", "train", "animal fish", "ef" * 32, 32, 24, False,
             "", "feedback"],
        ],
        columns=MANIFEST_COLUMNS,
    )
    # An augmented copy names its source photo, and no origin of its own.
    augmented = pd.DataFrame([{"path": "data/augmented/animal fish/001-aug0000.png", "split": "train",
                               "label": "animal fish", "sha256": "cd" * 32, "width": 32, "height": 24,
                               "augmented": True, "source": "data/prepared/train/animal fish/001.jpg"}])
    manifest = pd.concat([manifest, augmented], ignore_index=True)
    write_manifest(manifest, tmp_path / "manifest.csv")
    back = read_manifest(tmp_path / "manifest.csv")
    assert list(back.columns) == MANIFEST_COLUMNS
    assert back["origin"].tolist() == ["dataset", "feedback", ""]
    assert back["augmented"].tolist() == [False, False, True]
    assert back["source"].tolist() == manifest["source"].tolist()
    assert back["width"].tolist() == [32, 32, 32]

    classes = [{"label": "animal fish", "display": "Animal fish"}]
    write_classes(classes, tmp_path / "classes.json")
    assert read_classes(tmp_path / "classes.json") == classes


def test_scores_are_computed_on_a_split_s_original_images_only():
    manifest = pd.DataFrame({"path": ["a", "b", "c", "d"], "split": ["val", "val", "test", "val"],
                             "augmented": [False, True, False, False]})
    assert scored_split(manifest, "val")["path"].tolist() == ["a", "d"]
    assert scored_split(manifest, "test")["path"].tolist() == ["c"]


def test_example_photos_are_each_class_s_first_original_test_photo_in_class_order():
    manifest = pd.DataFrame({
        "path": ["t/bass", "x/bass", "a/bass", "b/bass", "c/trout", "d/bass"],
        "split": ["train", "test", "test", "test", "test", "test"],
        "label": ["bass", "bass", "bass", "bass", "trout", "bass"],
        "augmented": [False, True, False, False, False, False],
    })
    classes = [{"label": "trout", "display": "Trout"}, {"label": "bass", "display": "Bass"},
               {"label": "sprat", "display": "Sprat"}]
    # Not the train photo, not the augmented copy; sprat has no test photo and gets none.
    assert example_photos(manifest, classes) == [(classes[0], "c/trout"), (classes[1], "a/bass")]
