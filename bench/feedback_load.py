"""The feedback store under load: N concurrent writers add M records, against SQLite and PostgreSQL.

Each writer is a thread with its own share of the records, calling `FeedbackStore.add` as the app does
(a 256x256 JPEG photo decoded, stripped and re-encoded, then two inserts in one transaction). One add in
four marks one of 20 photos every writer shares (the same photo marked twice is one photo), and every tenth
add is sent twice with the same record id (a retried save). Afterwards the store is read back:

    lost        records sent but not stored
    duplicated  records, or photos, stored more than once

and the write latency of every add call (p50, p95 in ms) is printed per backend.

PostgreSQL: --postgres-url (a server whose user may create databases; a database of its own is made and
dropped), else a throwaway cluster from Debian's binaries with the server's default durability (fsync on).
SQLite: a new file in a temporary folder, WAL mode, synchronous FULL (the defaults of the store).

Usage (from the repo root):
    python bench/feedback_load.py [--records 1000] [--writers 20] [--backends sqlite,postgresql]
                                  [--postgres-url URL] [--json bench/results/feedback_load.json]
"""

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import func, select

from fish_classifier.feedback.postgres_cluster import TemporaryPostgres, create_database, drop_database
from fish_classifier.feedback.store import FeedbackStore, ModelAnswer, new_record_id, photos_table

SPECIES = ("animal fish", "animal fish bass", "fish sea_food red_mullet")
SHARED_PHOTOS = 20
SHARED_EVERY = 4  # one add in four marks a shared photo
RETRY_EVERY = 10  # one add in ten is sent twice with its record id
PHOTO_SIDE = 256  # the dataset's photos are 256 px JPEGs of about 20 to 40 kB


def photo(seed: int) -> bytes:
    """A smooth seeded image (a gradient and blobs) as a JPEG of dataset-like size, not incompressible noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:PHOTO_SIDE, 0:PHOTO_SIDE] / PHOTO_SIDE
    channels = [np.sin(x * rng.uniform(2, 9) + rng.uniform(0, 6)) * np.cos(y * rng.uniform(2, 9)) for _ in range(3)]
    pixels = ((np.stack(channels, axis=-1) + 1) * 127.5 + rng.normal(0, 6, (PHOTO_SIDE, PHOTO_SIDE, 3))).clip(0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def plan(records: int, writers: int) -> list[list[tuple[str, int]]]:
    """Each writer's adds as (record id, photo key): a key under SHARED_PHOTOS is a photo every writer may send."""
    work = [[] for _ in range(writers)]
    for n in range(records):
        key = n % SHARED_PHOTOS if n % SHARED_EVERY == 0 else SHARED_PHOTOS + n
        work[n % writers].append((new_record_id(), key))
    return work


def run_load(url: str, work: list[list[tuple[str, int]]], uploads: dict[int, bytes]) -> dict:
    latencies, errors = [], []
    lock = threading.Lock()
    start_line = threading.Barrier(len(work))

    with FeedbackStore(url) as store:
        def write(adds):
            mine = []
            try:
                start_line.wait()
                for n, (record_id, key) in enumerate(adds):
                    for _ in range(2 if n % RETRY_EVERY == 0 else 1):
                        started = time.perf_counter()
                        store.add(uploads[key], SPECIES[key % 3], ModelAnswer(SPECIES[(key + 1) % 3], 0.7, False, 1.0),
                                  "bench", species=SPECIES, record_id=record_id)
                        mine.append((time.perf_counter() - started) * 1000)
            except Exception as exc:  # noqa: BLE001 - counted below: a thread's exception is otherwise lost
                errors.append(f"{type(exc).__name__}: {exc}")
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=write, args=(adds,)) for adds in work]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - began

        sent = {record_id for adds in work for record_id, _ in adds}
        stored = [record.id for record in store.records()]
        with store.engine.connect() as conn:
            photo_rows = conn.execute(select(func.count()).select_from(photos_table)).scalar_one()
    photos_sent = len({key for adds in work for _, key in adds})
    return {
        "records": len(sent), "writers": len(work), "add_calls": len(latencies), "seconds": round(seconds, 2),
        "stored_records": len(stored), "stored_photos": photo_rows, "distinct_photos": photos_sent,
        "lost": len(sent - set(stored)),
        "duplicated": (len(stored) - len(set(stored))) + len(set(stored) - sent) + max(0, photo_rows - photos_sent),
        "errors": errors[:5], "error_count": len(errors),
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p95_ms": round(float(np.percentile(latencies, 95)), 1) if latencies else None,
    }


@contextlib.contextmanager
def postgres_database(server_url: str | None):
    """A new database's URL on `server_url`'s server, or on a throwaway cluster; dropped afterwards."""
    name = f"feedback_bench_{os.getpid()}"
    with contextlib.ExitStack() as stack:
        if server_url is None:
            server_url = stack.enter_context(TemporaryPostgres()).url
        url = create_database(server_url, name)
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            drop_database(server_url, name)


@contextlib.contextmanager
def sqlite_database():
    with tempfile.TemporaryDirectory(prefix="feedback-bench-") as folder:
        yield f"sqlite:///{folder}/feedback.db"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--writers", type=int, default=20)
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--postgres-url", help="a PostgreSQL server to use instead of a throwaway cluster")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    work = plan(args.records, args.writers)
    uploads = {key: photo(key) for key in {key for adds in work for _, key in adds}}
    size = statistics.median(map(len, uploads.values()))
    print(f"{args.records} records from {args.writers} writers, {len(uploads)} distinct photos "
          f"({PHOTO_SIDE}x{PHOTO_SIDE} JPEG, median {size / 1000:.0f} kB), every {RETRY_EVERY}th add sent twice; "
          f"{platform.machine()}, {os.cpu_count()} CPUs")
    results, failed = {}, False
    for backend in args.backends.split(","):
        database = sqlite_database() if backend == "sqlite" else postgres_database(args.postgres_url)
        with database as url:
            result = results[backend] = run_load(url, work, uploads)
        print(f"{backend}: lost={result['lost']} duplicated={result['duplicated']} "
              f"({result['stored_records']} records, {result['stored_photos']} photos stored; "
              f"{result['add_calls']} add calls in {result['seconds']} s, {result['error_count']} errors) "
              f"write latency p50 {result['p50_ms']} ms p95 {result['p95_ms']} ms")
        for error in result["errors"]:
            print(f"  error: {error}")
        failed |= bool(result["lost"] or result["duplicated"] or result["error_count"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
