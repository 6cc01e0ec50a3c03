import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fish_classifier.data.composite import (
    CompositeSettings,
    CompositeUsers,
    composite_photo,
    composite_rng,
    composite_train,
    draw_composites,
    select_backgrounds,
)
from fish_classifier.data.fish_mask import cut_out, fish_mask
from fish_classifier.data.manifest import MANIFEST_COLUMNS
from fish_classifier.params import ParamsError, check_params
from support.studio import SETTINGS, settings, studio_photo



def test_the_same_seed_gives_the_same_composite_bytes_and_another_seed_another():
    photo, _ = studio_photo()
    fish = cut_out(photo, fish_mask(photo, settings()))
    background, cover = studio_photo(seed=1)[0].rotate(90), Image.new("RGB", (20, 20), "green")
    first = composite_photo(fish, background, cover, settings(), composite_rng(42, "trout", 0))
    again = composite_photo(fish, background, cover, settings(), composite_rng(42, "trout", 0))
    other = composite_photo(fish, background, cover, settings(), composite_rng(43, "trout", 0))
    assert first == again and first != other
    image = Image.open(io.BytesIO(first))
    assert image.format == "JPEG" and image.size == (64, 64)


def test_a_softened_composite_is_no_sharper_than_its_background():
    photo, _ = studio_photo()
    fish = cut_out(photo, fish_mask(photo, settings()))
    scene = Image.new("RGB", (16, 16), (90, 140, 60))  # a 16 px scene: blown up 4x to the 64 px composite

    def sharpness(data):
        pixels = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=float)
        return np.abs(np.diff(pixels, axis=1)).mean()

    calm = settings(max_blur=0, occlusion=0, jpeg_quality=[95, 95], min_scale=0.8, max_scale=0.8)
    sharp = composite_photo(fish, scene, scene, calm.model_copy(update={"soften": 0.0}), composite_rng(1, "t", 0))
    soft = composite_photo(fish, scene, scene, calm.model_copy(update={"soften": 1.0}), composite_rng(1, "t", 0))
    assert sharpness(soft) < 0.8 * sharpness(sharp)


def _studio_tree(root, labels, per_label=2):
    rows = []
    for label in labels:
        (root / "data" / "prepared" / label).mkdir(parents=True)
        for i in range(per_label):
            path = f"data/prepared/{label}/{i}.png"
            studio_photo(seed=i)[0].save(root / path)
            rows.append({"path": path, "split": "train", "label": label, "sha256": "", "width": 128, "height": 128,
                         "augmented": False, "source": ""})
    rows.append({**rows[0], "split": "val"})
    backgrounds = []
    for i in range(3):
        (root / "scenes" / f"n0_lake{i}").mkdir(parents=True)
        backgrounds.append(root / "scenes" / f"n0_lake{i}" / "a.jpg")
        Image.new("RGB", (48, 48), (30 * i, 120, 60)).save(backgrounds[-1])
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS), backgrounds


def test_composite_train_makes_per_class_composites_of_the_studio_classes_only_the_same_on_any_workers(tmp_path):
    manifest, backgrounds = _studio_tree(tmp_path, ["animal fish", "fish sea_food trout", "fish sea_food shrimp"])
    made = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        frame, failed = composite_train(manifest, backgrounds, out, settings=settings(), catch_all_labels=["animal fish"],
                                        seed=7, workers=workers, repo_root=tmp_path)
        assert not failed
        made[workers] = frame
    frame = made[1]
    assert frame["label"].value_counts().to_dict() == {"fish sea_food shrimp": 3, "fish sea_food trout": 3}
    assert frame["augmented"].all() and (frame["split"] == "train").all()
    assert frame["source"].str.startswith("data/prepared/").all()  # each composite names its studio photo
    assert frame["sha256"].tolist() == made[2]["sha256"].tolist()  # byte-identical whatever the processes
    assert all((tmp_path / path).is_file() for path in frame["path"])
    # With composite.catch_all the catch-all class is composited too, as an oval of each photo.
    frame, failed = composite_train(manifest, backgrounds, tmp_path / "all", settings=settings(catch_all=True),
                                    catch_all_labels=["animal fish"], seed=7, repo_root=tmp_path)
    assert frame["label"].value_counts().to_dict() == {"animal fish": 3, "fish sea_food shrimp": 3,
                                                       "fish sea_food trout": 3}


def test_scene_share_puts_the_fish_onto_the_photos_of_the_classes_naming_no_species(tmp_path):
    manifest, backgrounds = _studio_tree(tmp_path, ["animal fish", "fish sea_food trout"])
    for path in manifest.loc[manifest["label"] == "animal fish", "path"]:  # a red scene; the backgrounds are green
        Image.new("RGB", (128, 128), (200, 30, 30)).save(tmp_path / path)

    def border_colours(share, labels):
        frame, _ = composite_train(manifest, backgrounds, tmp_path / f"out{share}", settings=settings(scene_share=share),
                                   catch_all_labels=["animal fish"], scene_labels=labels, seed=3, repo_root=tmp_path)
        assert frame["label"].eq("fish sea_food trout").all() and len(frame) == 3
        photos = [np.asarray(Image.open(tmp_path / path), dtype=float) for path in frame["path"]]
        return [np.median(np.concatenate([p[0], p[-1], p[:, 0], p[:, -1]]), axis=0) for p in photos]

    for red, green, _ in border_colours(1.0, ["animal fish"]):
        assert red > 150 and green < 80
    for red, green, _ in border_colours(0.0, ["animal fish"]) + border_colours(1.0, []):
        assert red < 100 and green > 90  # no share, or no class to take scenes from: the background photos


def test_composite_train_without_backgrounds_says_what_to_set(tmp_path):
    manifest, _ = _studio_tree(tmp_path, ["fish sea_food trout"])
    with pytest.raises(ValueError, match="set data.background_source"):
        composite_train(manifest, [], tmp_path / "out", settings=settings(), catch_all_labels=[], seed=0,
                        repo_root=tmp_path)
    frame, failed = composite_train(manifest, [], tmp_path / "out", settings=settings(per_class=0), catch_all_labels=[],
                                    seed=0, repo_root=tmp_path)
    assert frame.empty and not failed


def test_draw_composites_writes_a_sheet_and_says_when_there_are_none(tmp_path):
    manifest, backgrounds = _studio_tree(tmp_path, ["fish sea_food trout"])
    frame, _ = composite_train(manifest, backgrounds, tmp_path / "out", settings=settings(), catch_all_labels=[], seed=0,
                               repo_root=tmp_path)
    draw_composites(manifest, frame, settings(), tmp_path / "sheet.png", repo_root=tmp_path)
    draw_composites(manifest, frame.head(0), settings(), tmp_path / "none.png", repo_root=tmp_path)
    assert "3 in all" in Image.open(tmp_path / "sheet.png").text["Title"]
    assert "data.background_source is empty" in Image.open(tmp_path / "none.png").text["Description"]


def test_select_backgrounds_keeps_the_photos_of_matching_folders(tmp_path):
    photos = [tmp_path / "n1_lakeside" / "a.jpg", tmp_path / "n2_goose" / "b.jpg", tmp_path / "c.jpg"]
    assert select_backgrounds(photos, tmp_path, ["*lakeside"]) == photos[:1]
    assert select_backgrounds(photos, tmp_path, []) == photos


@pytest.mark.parametrize(("changes", "message"), [
    ({"min_scale": 0.9, "max_scale": 0.5}, "composite.min_scale must be <= max_scale (0.5), got 0.9"),
    ({"jpeg_quality": [90, 40]}, "composite.jpeg_quality must be [lowest, highest], integers within [1, 95], "
                                 "got [90, 40]"),
    ({"min_mask_share": 0.8}, "composite.min_mask_share must be < max_mask_share (0.7), got 0.8"),
])
def test_settings_out_of_order_are_refused_naming_the_key(changes, message):
    with pytest.raises(ParamsError) as error:
        check_params(CompositeSettings, {**SETTINGS, **changes}, "composite")
    assert error.value.problems == [message]


def test_composite_users_say_which_models_train_on_composites_and_refuse_a_missing_flag():
    users = check_params(CompositeUsers, {"models": ["cnn", "mobilenetv2"], "batch_size": 32,
                                          "cnn": {"composites": False}, "mobilenetv2": {"composites": True}}, "train")
    assert users.using() == ["mobilenetv2"] and not users.uses("cnn")
    with pytest.raises(ParamsError) as error:
        check_params(CompositeUsers, {"models": ["cnn"], "cnn": {"epochs": 3}}, "train")
    assert error.value.problems == ["train.cnn.composites must be true or false, got None"]
