"""Stage download: fetch the dataset zip named by params `data.source` and unpack its
train/val/test root into data/raw, recording the zip's sha256 in data/download.json.

    python stages/download.py
"""

import json
import sys
from fish_classifier.data.download import DownloadError, DownloadSettings, download_dataset
from fish_classifier.layout import DOWNLOAD_RECORD, RAW_DIR
from fish_classifier.params import stage_arguments, stage_params


def main(argv=None) -> int:
    stage_arguments(__doc__, argv)
    data = stage_params(data=DownloadSettings).data
    try:
        record = download_dataset(data.source, drive_file=data.drive_file, raw_dir=RAW_DIR, limits=data)
    except DownloadError as exc:
        # The message says what to do; a traceback would only bury it.
        print(f"download failed: {exc}", file=sys.stderr)
        return 1
    DOWNLOAD_RECORD.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    files = ", ".join(f"{split} {n}" for split, n in record["files"].items())
    print(f"unpacked {record['dataset_root']} into {RAW_DIR} ({files} files; sha256 {record['sha256'][:12]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
