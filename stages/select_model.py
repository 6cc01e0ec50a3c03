"""Stage `select`: rank the evaluated models, write the comparison, and bundle the best one for deployment.

The bundle gets the Keras model and its LiteRT export for serving, checked against each other on test images.

Named select_model.py because a stages/select.py would shadow the standard library's `select` module
for every script in this folder.
"""

import json
from pathlib import Path

import pandas as pd

from fish_classifier.bundle import training_data_hash, write_bundle
from fish_classifier.manifest import read_classes, read_manifest
from fish_classifier.params import load_params
from fish_classifier.selection import choose_threshold, rank_models, summary, summary_markdown
from fish_classifier.serving import evenly_spaced, export_for_serving

params = load_params()
names = params["train"]["models"]
select = params["select"]

metrics = {name: json.loads(Path("metrics", f"{name}.json").read_text(encoding="utf-8")) for name in names}
best = rank_models(metrics, select["metric"])[0]
val_confidence = pd.read_csv(Path("metrics", best, "val_confidence.csv"))["confidence"]
threshold = choose_threshold(
    val_confidence,
    rule=select["threshold_rule"],
    val_flag_rate=select["val_flag_rate"],
    fixed_threshold=select["fixed_threshold"],
)

Path("metrics/summary.json").write_text(
    json.dumps(summary(metrics, select["metric"], threshold), indent=2) + "\n", encoding="utf-8"
)
Path("metrics/summary.md").write_text(summary_markdown(metrics, select["metric"]), encoding="utf-8")

write_bundle(
    "models/deploy",
    model_path=Path("models", best, "model.keras"),
    classes=read_classes("data/classes.json"),
    model_name=best,
    temperature=metrics[best]["calibration"]["temperature"],
    threshold=threshold,
    metrics=metrics[best],
    data_hash=training_data_hash(["data/manifest.csv", "data/augmented/manifest.csv"]),
)
flagged = (val_confidence < threshold).mean()
print(f"selected {best} ({select['metric']} {metrics[best][select['metric']]:.4f}); "
      f"threshold {threshold:.4f} flags {flagged:.1%} of validation images")

manifest = read_manifest("data/manifest.csv")
test_images = manifest.loc[manifest["split"] == "test", "path"]
parity = export_for_serving("models/deploy", evenly_spaced(test_images, select["serving_parity_images"]))
print(f"exported models/deploy/model.tflite: largest probability difference {parity['max_abs_diff']:.1e} "
      f"on {parity['images']} test images, every top label the same")
