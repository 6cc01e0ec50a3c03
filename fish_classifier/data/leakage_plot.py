"""The closest near-duplicate pairs across splits, drawn side by side (data/near_duplicates.png), so that a
person can see whether prepare's perceptual-hash distance catches copies of one photo, and only those."""

from pathlib import Path

from fish_classifier.contact_sheet import draw_contact_sheet, side_by_side, thumbnail

PAIR_CELL_INCHES = (6.5, 2.4)  # one pair per row: two thumbnails and their caption


def closest_near_duplicates(near_duplicate_pairs: dict[str, list[dict]], limit: int) -> list[dict]:
    """`find_leaks`'s near-duplicate pairs ({"train-val": [{"train": path, "val": path, "distance": d}, ...], ...}),
    the closest first (ties in split-pair, then path order), at most `limit`, each as
    {"splits": (split, split), "paths": (path, path), "distance": d}."""
    pairs = [
        {"splits": tuple(key.split("-")), "paths": tuple(entry[split] for split in key.split("-")),
         "distance": entry["distance"]}
        for key, entries in near_duplicate_pairs.items()
        for entry in entries
    ]
    return sorted(pairs, key=lambda pair: pair["distance"])[:limit]


def with_dropped_feedback(leaks: dict, dropped_pairs: dict[str, list[dict]]) -> dict:
    """`leaks` (`find_leaks`'s result) with the feedback photos that prepare dropped as duplicates of val or test
    photos (`fold_in_feedback`'s pairs: {"feedback-val": [{"feedback": path, "val": path, "distance": d,
    "exact": bool}, ...], ...}) added as split pairs of their own, so that the picture shows them too."""
    near = {pair: [entry for entry in entries if not entry["exact"]] for pair, entries in dropped_pairs.items()}
    exact = {pair: [entry for entry in entries if entry["exact"]] for pair, entries in dropped_pairs.items()}
    return {
        "exact_duplicates": {**leaks["exact_duplicates"], **{pair: len(found) for pair, found in exact.items()}},
        "near_duplicates": {**leaks["near_duplicates"], **{pair: len(found) for pair, found in near.items()}},
        "exact_duplicate_pairs": {**leaks["exact_duplicate_pairs"], **exact},
        "near_duplicate_pairs": {**leaks["near_duplicate_pairs"], **near},
    }


def plot_near_duplicates(leaks: dict, label_of: dict[str, str], display_of: dict[str, str], path: str | Path, *,
                         limit: int, max_distance: int) -> None:
    """The `limit` closest near-duplicate pairs of `leaks` (`find_leaks`'s result), one pair per row, each photo
    captioned with its split and class (`label_of` maps a path to its label, `display_of` a label to its name)."""
    pairs = closest_near_duplicates(leaks["near_duplicate_pairs"], limit)
    photos = [(side_by_side(*(thumbnail(p) for p in pair["paths"])), _caption(pair, label_of, display_of))
              for pair in pairs]
    total = sum(leaks["near_duplicates"].values())
    exact = sum(leaks["exact_duplicates"].values())
    title = f"Near duplicates across splits (perceptual-hash distance <= {max_distance}): {total} pairs"
    if total:
        title += f", the {len(pairs)} closest shown" if total > len(pairs) else ", closest first"
    if exact:
        title += f"\nExact duplicates (identical files), listed in prepare_report.json and not drawn: {exact}"
    draw_contact_sheet(photos, path, title, columns=1, cell_inches=PAIR_CELL_INCHES,
                       empty_message="No near-duplicate pairs across splits")


def _caption(pair: dict, label_of: dict[str, str], display_of: dict[str, str]) -> str:
    left, right = (f"{split}: {display_of[label_of[photo]]} ({Path(photo).name})"
                   for split, photo in zip(pair["splits"], pair["paths"], strict=True))
    return f"{left}   |   {right}\nhash distance {pair['distance']}"
