"""`fish-classifier feedback`: list, accept, reject and export the feedback users gave in the app.

The feedback store (and SQLAlchemy under it) is imported only when a feedback command runs, so that
`fish-classifier predict` starts without it.
"""

import argparse
import functools
import sys
from pathlib import Path

from fish_classifier.cli.errors import WRITE_FAILED, usage_error
from fish_classifier.feedback import DEFAULT_URL, STATUSES, URL_ENV
from fish_classifier.serving.prediction_row import readable

SHEET_PHOTOS = 100  # photos on a contact sheet: a bigger one is too large to look at
MIN_ID_PREFIX = 6


def add_feedback(commands) -> None:
    feedback = commands.add_parser(
        "feedback",
        help="review the photos users marked in the app, and export the accepted ones",
        description="List, accept, reject and export the feedback users gave in the app. Exit codes: 0 done, "
        "2 bad input (an unknown id, a URL that names no database), 1 the store could not be reached, read or "
        "written.",
    )
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--db", metavar="URL",
                       help=f"the feedback store, any SQLAlchemy URL (default: ${URL_ENV}, else {DEFAULT_URL})")
    actions = feedback.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[store], help="print the records as a table, oldest first")
    listing.add_argument("--status", choices=STATUSES, help="only the records of this review status (default: all)")
    listing.add_argument("--sheet", metavar="PNG",
                         help=f"also draw the listed photos with their labels into this PNG (the first {SHEET_PHOTOS})")
    listing.set_defaults(run=run_feedback_list)
    for action, status in (("accept", "accepted"), ("reject", "rejected")):
        review = actions.add_parser(action, parents=[store], help=f"mark records {status}")
        review.add_argument("ids", nargs="*", metavar="ID",
                            help=f"record ids, or their first {MIN_ID_PREFIX} or more characters as `list` shows them")
        review.add_argument("--all-new", action="store_true", help=f"{action} every record still new")
        review.set_defaults(run=run_feedback_review, status=status)
    export = actions.add_parser("export", parents=[store],
                                help="write the accepted photos as OUT_DIR/<label>/<sha256>.jpg for data.feedback_source")
    export.add_argument("out_dir", metavar="OUT_DIR",
                        help="folder to write; an earlier export there is replaced, any other content refused")
    export.add_argument("--status", choices=STATUSES, default="accepted", help="records to export (default: %(default)s)")
    export.set_defaults(run=run_feedback_export)


def _feedback_errors(run):
    """`run` with a FeedbackError said in one line: exit 1 when the store failed, 2 for what the user gave."""

    @functools.wraps(run)
    def reporting(args) -> int:
        from fish_classifier.feedback.store import FeedbackError, StoreUnavailable

        try:
            return run(args)
        except StoreUnavailable as exc:
            print(f"fish-classifier: error: {exc}", file=sys.stderr)
            return WRITE_FAILED
        except FeedbackError as exc:
            return usage_error(str(exc))
        except OSError as exc:  # the contact sheet's file
            print(f"fish-classifier: error: cannot write {readable(str(exc.filename))}: {exc.strerror or exc}",
                  file=sys.stderr)
            return WRITE_FAILED

    return reporting


@_feedback_errors
def run_feedback_list(args) -> int:
    with _feedback_store(args) as store:
        records = store.records(args.status)
        print(_records_table(records))
        if args.sheet:
            _write_feedback_sheet(store, records, args.sheet, args.status)
            shown = min(len(records), SHEET_PHOTOS)
            print(f"wrote {shown} of {len(records)} photos to {readable(args.sheet)}", file=sys.stderr)
    return 0


@_feedback_errors
def run_feedback_review(args) -> int:
    if bool(args.ids) == args.all_new:
        return usage_error("give record ids or --all-new, not both and not neither")
    with _feedback_store(args) as store:
        records = store.records("new" if args.all_new else None)
        ids = [r.id for r in records] if args.all_new else _resolve_ids(args.ids, [r.id for r in records])
        count = store.set_status(ids, args.status)
    print(f"{count} record{'s' * (count != 1)} {args.status}")
    return 0


@_feedback_errors
def run_feedback_export(args) -> int:
    with _feedback_store(args) as store:
        report = store.export(args.out_dir, status=args.status)
    labels = ", ".join(f"{label} {count}" for label, count in report["labels"].items()) or "none"
    print(f"exported {report['photos']} photos ({report['records']} {args.status} records) "
          f"to {readable(args.out_dir)}: {labels}")
    for photo in report["relabelled"]:
        print(f"photo {photo['sha256'][:12]} was labelled {', '.join(photo['labels'])}: kept the latest, "
              f"{photo['kept']}")
    return 0


def _feedback_store(args):
    from fish_classifier.feedback.store import FeedbackStore, store_url

    return FeedbackStore(store_url(args.db))


def _resolve_ids(given: list[str], known: list[str]) -> list[str]:
    """Each given id, or unique prefix of at least MIN_ID_PREFIX characters, as the full record id."""
    from fish_classifier.feedback.store import FeedbackError

    resolved = []
    for prefix in given:
        prefix = prefix.strip().lower()
        if len(prefix) < MIN_ID_PREFIX:
            raise FeedbackError(f"record id {prefix!r} is too short; give at least {MIN_ID_PREFIX} characters")
        matches = [i for i in known if i.startswith(prefix)]
        if not matches:
            raise FeedbackError(f"no feedback record {prefix}; `fish-classifier feedback list` shows the ids")
        if len(matches) > 1:
            raise FeedbackError(f"record id {prefix} is the start of {len(matches)} records; give more of it")
        resolved.append(matches[0])
    return resolved


def _model_said(record) -> str:
    return f"unknown (closest {record.model.label})" if record.model.unknown else record.model.label


def _records_table(records) -> str:
    header = ("id", "time (UTC)", "label", "model said", "confidence", "status")
    rows = [(r.id[:12], r.created_at.strftime("%Y-%m-%d %H:%M"), r.label, _model_said(r),
             f"{r.model.confidence:.2f}", r.status) for r in records]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    return "\n".join(lines + [f"{len(records)} record{'s' * (len(records) != 1)}"])


def _write_feedback_sheet(store, records, path: str, status: str | None) -> None:
    from fish_classifier.contact_sheet import THUMBNAIL_PIXELS, draw_contact_sheet
    from fish_classifier.images import open_rgb

    photos = []
    for record in records[:SHEET_PHOTOS]:
        image = open_rgb(store.photo(record.photo_sha256), target_size=THUMBNAIL_PIXELS)
        image.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
        caption = f"{record.label}\nmodel: {_model_said(record)} {record.model.confidence:.2f}\n{record.id[:12]}"
        photos.append((image, caption))
    which = f"{status} " if status else ""
    more = f" (the first {SHEET_PHOTOS} shown)" if len(records) > SHEET_PHOTOS else ""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    draw_contact_sheet(photos, path, f"Feedback: {len(records)} {which}records{more}", columns=5,
                       empty_message=f"No {which}feedback records")
