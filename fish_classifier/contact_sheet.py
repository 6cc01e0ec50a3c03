"""Photos drawn in a grid, each with its caption, as a PNG for the pipeline's plots (`dvc plots show`)."""

import math
import textwrap
from pathlib import Path

from PIL import Image

from fish_classifier.images import open_rgb, read_image_file

THUMBNAIL_PIXELS = 160  # the longer side of a photo on a sheet
CELL_INCHES = (2.6, 3.0)  # width, height of one photo and its caption of up to three lines
MIN_WIDTH_INCHES = 6.5
TITLE_CHARACTERS_PER_INCH = 13  # at the title's 10 points, with room to spare
DPI = 100


def thumbnail(path: str | Path, size: int = THUMBNAIL_PIXELS) -> Image.Image:
    """The photo at `path` as RGB, shrunk to fit a `size` square (never enlarged)."""
    image = open_rgb(read_image_file(path), target_size=size)
    image.thumbnail((size, size))
    return image


def side_by_side(left: Image.Image, right: Image.Image, gap: int = 8) -> Image.Image:
    """The two photos on one white strip, `gap` pixels apart, their centres level."""
    height = max(left.height, right.height)
    strip = Image.new("RGB", (left.width + gap + right.width, height), "white")
    strip.paste(left, (0, (height - left.height) // 2))
    strip.paste(right, (left.width + gap, (height - right.height) // 2))
    return strip


def draw_contact_sheet(photos: list[tuple[Image.Image, str]], path: str | Path, title: str, *, columns: int,
                       empty_message: str, cell_inches: tuple[float, float] = CELL_INCHES) -> None:
    """The (photo, caption) pairs in rows of `columns`, under `title`; with no photos, `empty_message` instead."""
    plt = pyplot()
    if not photos:
        fig = plt.figure(figsize=(MIN_WIDTH_INCHES, 2))
        _suptitle(fig, title)
        fig.text(0.5, 0.4, empty_message, ha="center", va="center", fontsize=12)
    else:
        columns = min(columns, len(photos))
        rows = math.ceil(len(photos) / columns)
        width, height = cell_inches
        # Never narrower than MIN_WIDTH_INCHES, so that a sheet of one photo still has room for its title.
        figsize = (max(width * columns, MIN_WIDTH_INCHES), height * rows + 0.6)
        # Constrained, not tight: tight_layout lets the title run into the top row's captions.
        fig, axes = plt.subplots(rows, columns, figsize=figsize, squeeze=False, layout="constrained")
        _suptitle(fig, title)
        for ax in axes.flat:
            ax.axis("off")
        for ax, (photo, caption) in zip(axes.flat, photos, strict=False):
            ax.imshow(photo)
            ax.set_title(caption, fontsize=8)
    # The words also go in as PNG text, like an image's alt text: readable without seeing the picture.
    words = "\n\n".join(caption for _, caption in photos) or empty_message
    fig.savefig(path, dpi=DPI, metadata={"Title": title, "Description": words})
    plt.close(fig)


def _suptitle(fig, title: str) -> None:
    """The title, each of its lines wrapped to the figure's width (a long one would be cut off at the edges)."""
    width = int(fig.get_figwidth() * TITLE_CHARACTERS_PER_INCH)
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in title.splitlines()), fontsize=10)


def pyplot():
    """matplotlib.pyplot on the Agg backend, for every plot the pipeline draws."""
    # Agg draws to files only: stages run on machines without a display.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
