"""The CSV that `fish-classifier predict` writes: where it goes, and what goes in its cells.

Where: a regular file, or a new one, is written beside itself as a hidden `.NAME.partial-PID` and renamed
over the old one only once every row is in, so an interrupted run leaves the old file (or none), never
half of one; a link to a regular file keeps its link and gets a new target. Anything else that already
exists (/dev/stdout, /dev/null, a named pipe, the /dev/fd/N of a shell's `>(cmd)`) is written into as a
stream, as any Unix tool writes to it, and never replaced.

What: one `prediction_row` a photo (the app's table has the same columns), every text cell as a spreadsheet can
open it safely (`safe_cell`: a photo named `=HYPERLINK(...).jpg`
gets a leading `'`) and as UTF-8 can hold it (a byte of a file name that is not UTF-8 shows as `\\xff`).
"""

import contextlib
import csv
import os
import stat
from pathlib import Path

from fish_classifier.serving.prediction_row import COLUMNS, csv_cells, prediction_row, readable


class OutputError(Exception):
    """The CSV cannot be written where it was asked for; the message says why."""


class PredictionsCsv:
    """`with PredictionsCsv(path) as out:` then `out.write(prediction)` for each, and `out.commit()` at the end.

    Opening raises OutputError when `path` cannot be written (a file where a folder should be, no
    permission, a read-only disk), and so do `write` and `commit` (a full disk, a reader gone). Leaving
    the block without `commit` leaves the old file as it was, and no hidden one beside it.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.streamed = is_stream(self.path)
        self._target = self.path if self.streamed else Path(os.path.realpath(self.path))
        self._partial = None if self.streamed else self._target.with_name(f".{self._target.name}.partial-{os.getpid()}")
        blocker = next((p for p in self._target.parents if os.path.lexists(p)), None)
        if blocker is not None and not blocker.is_dir():
            raise OutputError(f"{self._cannot_write}: {readable(str(blocker))} is a file, not a folder")
        with self._explained():
            if not self.streamed:
                self._target.parent.mkdir(parents=True, exist_ok=True)
            # Appending, a stream that is a file a shell opened (`>> log` then --out /dev/stdout) keeps what it holds.
            mode = "a" if self.streamed else "w"
            self._file = open(self._partial or self._target, mode, newline="", encoding="utf-8")
            self._writer = csv.DictWriter(self._file, fieldnames=COLUMNS)
            self._writer.writeheader()

    def write(self, prediction) -> None:
        with self._explained():
            self._writer.writerow(csv_cells(prediction_row(prediction)))

    def commit(self) -> None:
        """Finish the file: the stream flushed, or the hidden file renamed over `path`."""
        with self._explained():
            self._file.close()
            if self._partial is not None:
                os.replace(self._partial, self._target)  # atomic within one folder

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        try:
            self._file.close()  # a no-op after commit; a stream's reader may be gone, which nobody waits to hear
        except OSError:
            pass
        finally:
            if self._partial is not None:
                self._partial.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _explained(self):
        """An OSError in the block as an OutputError that names the file and why (e.g. `Permission denied`)."""
        try:
            yield
        except OSError as exc:
            raise OutputError(f"{self._cannot_write}: {exc.strerror or exc}") from exc

    @property
    def _cannot_write(self) -> str:
        return f"cannot write {readable(str(self.path))}"


def is_stream(path: Path) -> bool:
    """Whether `path` is to be written into rather than replaced: an existing file that is not a regular one,
    or a name for an open file descriptor (/dev/stdout, /dev/fd/N), whose file a shell opened, perhaps to append."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # not there yet (or under a file: PredictionsCsv says so)
        return False
    names_a_descriptor = os.path.abspath(path).startswith(("/dev/", "/proc/")) and os.path.islink(path)
    return not stat.S_ISREG(mode) or names_a_descriptor
