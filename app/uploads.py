"""What the app lets in: how many photos and bytes a batch, a browser session and the server hold.

The caps on uploads (a batch's count and bytes, a session's and the server's bytes held), the budget that
refuses an upload past them (HTTP 413) and drops a closed session's uploads, the notices that say so, and the
one sha256 of each upload the page keys its caches and the feedback marks by. app/app.py imports it.
"""

import asyncio
import ctypes
import functools
import gc
import hashlib
import logging
import threading
import time
from collections import defaultdict
from typing import Callable

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

LOGGER = logging.getLogger(__name__)
MAX_FILES = 20  # photos identified per upload: each is decoded and run, so a batch must stay small
# Streamlit keeps every uploaded file in the server's memory while its browser session lives; the size of
# one file is capped by server.maxUploadSize in .streamlit/config.toml, the total by these two.
SESSION_UPLOAD_MB = 100  # photos one browser session may hold on the server at once
SERVER_UPLOAD_MB = 300  # photos all browser sessions together may hold
FORGET_AFTER_S = 10  # a closed browser session's uploads are dropped this long after it disconnects
SWEEP_EVERY_S = 5  # how often the server looks for closed sessions while any uploads are held
MB = 10**6  # as the uploader shows file sizes (server.maxUploadSize counts 2**20 bytes to its megabyte)
DIGESTS_KEY = "upload-digests"  # session state: {uploader's file id: sha256}, the uploads on the page, each hashed once


def size_text(size: int) -> str:
    return f"{size / MB:.1f} MB"


def batch_length(sizes: list[int], max_files: int = MAX_FILES, max_bytes: int = SESSION_UPLOAD_MB * MB) -> int:
    """How many of the leading uploads one run identifies: at most `max_files`, at most `max_bytes` together."""
    total = 0
    for count, size in enumerate(sizes[:max_files]):
        total += size
        if total > max_bytes:
            return count
    return min(len(sizes), max_files)


def batch_notice(sizes: list[int], kept: int) -> str | None:
    """Why only the first `kept` of uploads of `sizes` bytes are identified; None when all are."""
    if kept == len(sizes):
        return None
    others = f"Upload the other {len(sizes) - kept} in another batch."
    if kept == MAX_FILES:
        return (f"{len(sizes)} photos chosen, but the app identifies at most {MAX_FILES} at a time: "
                f"the first {MAX_FILES} are shown below. {others}")
    return (f"{len(sizes)} photos chosen, {size_text(sum(sizes))} in all, but the app identifies at most "
            f"{SESSION_UPLOAD_MB} MB of photos at a time: the first {kept} ({size_text(sum(sizes[:kept]))}) "
            f"are shown below. {others}")


def upload_digest(file_id: str, data: bytes) -> str:
    """The sha256 of the upload `file_id` (the uploader's id for the file), whose bytes are `data`. Streamlit runs
    the page again on every click, with the same uploads: each is hashed on the first run that shows it, then known
    by its id (the uploader gives every file it receives an id of its own: a new file, even of an old one's name,
    is hashed afresh)."""
    digests = st.session_state.setdefault(DIGESTS_KEY, {})
    if file_id not in digests:
        digests[file_id] = hashlib.sha256(data).hexdigest()
    return digests[file_id]


def keep_digests(file_ids: list[str]) -> None:
    """Forget the digests of uploads no longer on the page (removed from the uploader, or past the batch's cap)."""
    digests = st.session_state.get(DIGESTS_KEY, {})
    for file_id in digests.keys() - set(file_ids):
        del digests[file_id]


class UploadBudget:
    """Bounds the photo bytes the server holds: an upload that would take its browser session past
    SESSION_UPLOAD_MB, or all sessions together past SERVER_UPLOAD_MB, is refused (HTTP 413), and a closed
    session's uploads are dropped FORGET_AFTER_S after it disconnects.

    Streamlit holds every upload in memory until the session shuts down, and it keeps a closed tab's session
    for a reconnect, then forgets it without shutting it down (streamlit#12506, #12607): its uploads stayed
    held for the life of the server. Installed on Streamlit's in-memory upload manager, whose `add_file` the
    upload route calls on the server's event loop, where the sweep for closed sessions then runs too."""

    def __init__(self, manager, *, session_bytes: int, server_bytes: int,
                 is_active: Callable[[str], bool] | None = None, close_session: Callable[[str], None] | None = None,
                 forget_after: float = FORGET_AFTER_S, sweep_every: float = SWEEP_EVERY_S):
        self.manager = manager
        self.session_bytes = session_bytes
        self.server_bytes = server_bytes
        self.is_active = is_active
        self.close_session = close_session
        self.forget_after = forget_after
        self.sweep_every = sweep_every
        self.refused: dict[str, list[tuple[str, int, str]]] = defaultdict(list)  # not yet shown, by session
        self._gone_since: dict[str, float] = {}
        self._sweep_scheduled = False
        self._add_file = manager.add_file
        manager.add_file = self.add_file

    def held(self, session_id: str | None = None) -> int:
        """Bytes of uploads held for `session_id`, or for every session."""
        storage = self.manager.file_storage
        sessions = list(storage.values()) if session_id is None else [storage.get(session_id, {})]
        return sum(len(record.data) for files in sessions for record in list(files.values()))

    def add_file(self, session_id: str, file) -> None:
        replaced = self.manager.file_storage.get(session_id, {}).get(file.file_id)
        size = len(file.data) - (len(replaced.data) if replaced is not None else 0)
        cap = ("session" if self.held(session_id) + size > self.session_bytes
               else "server" if self.held() + size > self.server_bytes else None)
        if cap is not None:
            self.refused[session_id].append((file.name, len(file.data), cap))
            LOGGER.warning("upload %r (%d bytes) refused: over the %s cap", file.name, len(file.data), cap)
            raise upload_refused(f"Over the app's {cap} upload cap")
        self._add_file(session_id, file)
        self._schedule_sweep()

    def take_refused(self, session_id: str) -> list[tuple[str, int, str]]:
        """(name, bytes, cap) of the uploads refused to `session_id` since the last call."""
        return self.refused.pop(session_id, [])

    def sweep(self, now: float | None = None) -> int:
        """Drop the uploads of sessions disconnected for `forget_after` seconds; the bytes dropped."""
        if self.is_active is None:
            return 0
        now = time.monotonic() if now is None else now
        dropped = 0
        for session_id in list(self.manager.file_storage):
            if self.is_active(session_id):
                self._gone_since.pop(session_id, None)
            elif now - self._gone_since.setdefault(session_id, now) >= self.forget_after:
                dropped += self.held(session_id)
                if self.close_session is not None:
                    self.close_session(session_id)  # its session state holds the uploads too
                self.manager.remove_session_files(session_id)
                self._gone_since.pop(session_id)
                self.refused.pop(session_id, None)
        if dropped:
            release_memory()
        return dropped

    def _schedule_sweep(self) -> None:
        if self._sweep_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on the server's event loop (a test adding files by hand): no timer
            return
        self._sweep_scheduled = True
        loop.call_later(self.sweep_every, self._sweep_and_reschedule, loop)

    def _sweep_and_reschedule(self, loop) -> None:
        try:
            self.sweep()
        except Exception:
            LOGGER.exception("sweeping closed sessions' uploads failed")
        if self.manager.file_storage:
            loop.call_later(self.sweep_every, self._sweep_and_reschedule, loop)
        else:
            self._sweep_scheduled = False


def upload_refused(message: str) -> Exception:
    """What the upload route answers 413 to (Streamlit serves with Starlette); a 500 where it does not."""
    try:
        from starlette.exceptions import HTTPException
    except ImportError:
        return RuntimeError(message)
    return HTTPException(status_code=413, detail=message)


@st.cache_resource(show_spinner=False)
def budget_lock() -> threading.Lock:
    return threading.Lock()


def upload_budget() -> UploadBudget | None:
    """The budget on this server's uploads, installed on first use; None where uploads are not held in memory."""
    from streamlit import runtime
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager

    manager = getattr(get_script_run_ctx(), "uploaded_file_mgr", None)
    if not isinstance(manager, MemoryUploadedFileManager):
        return None
    server = runtime.get_instance() if runtime.exists() else None
    with budget_lock():  # the script runs afresh on every interaction, in a thread per session: install once
        if getattr(manager, "fish_budget", None) is None:
            manager.fish_budget = UploadBudget(
                manager, session_bytes=SESSION_UPLOAD_MB * MB, server_bytes=SERVER_UPLOAD_MB * MB,
                is_active=server and server.is_active_session,
                close_session=server and functools.partial(close_session, server),
            )
    return manager.fish_budget


def close_session(server, session_id: str) -> None:
    """Shut a closed browser session down, its state emptied first: the uploader's value there holds the photos'
    bytes, and Streamlit's runtime loop keeps the last session it served referenced until another one connects."""
    sessions = getattr(server, "_session_mgr", None)  # no public way to a session by its id
    info = sessions.get_session_info(session_id) if sessions is not None else None
    if info is not None:
        info.session.session_state.clear()
    server.close_session(session_id)


def release_memory() -> None:
    """Hand freed memory back to the system: Python's cycles collected, then glibc's free lists trimmed
    (without that, the heap a batch of large photos grew stays mapped after they are freed)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, Alpine's musl): nothing to trim
        pass
