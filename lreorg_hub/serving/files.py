"""What the server keeps of a visitor's photo or clip, where, and for how long (the Privacy
tab states these rules; the app's tests measure them).

- The upload file (written by the web framework while it travels) is read once, then it and
  its folder are deleted at once: :func:`read_and_delete`.
- The photo's (or clip's) bytes stay in memory only, per visitor session, so that trying
  other settings needs no new upload: :class:`RecentPhotos` (a time limit, a size cap,
  dropped when the session ends).
- Files left in the temporary folder (results the browser loads — the webcam's anonymized
  frames among them —, an anonymized clip, uploads never used) are deleted once older than a
  stated age, and all of them when the server stops: :func:`delete_older_than`.

:class:`VisitorFiles` applies these rules to the web framework's files; no web framework
here (``app.py`` hands over Gradio's sets of paths).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, MutableSet

from .text import RequestError

__all__ = ["FileRules", "read_and_delete", "delete_older_than", "RecentPhotos",
           "VisitorFiles", "PHOTO_GONE", "CLIP_GONE"]

PHOTO_GONE = ("Your photo was deleted from the server as the Privacy tab says; please upload it "
              "again.")
CLIP_GONE = ("Your clip was deleted from the server as the Privacy tab says; please upload it "
             "again.")


@dataclass(frozen=True)
class FileRules:
    """How long each kind of file or copy is kept, in seconds (what the Privacy tab says).

    result_s: a result image file (the browser loads it right away; downloads work until
    then); unused_upload_s: an upload no run has read (e.g. waiting in a long queue);
    memory_s: the photo's bytes in memory after the session's last run; a sweep runs every
    sweep_every_s, so a file is gone at most that much after its age is reached."""

    result_s: float = 60.0
    unused_upload_s: float = 300.0
    memory_s: float = 600.0
    sweep_every_s: float = 5.0


def _remove_empty_parent(path: Path, root: Path | None) -> None:
    """Remove the file's folder when it is empty and lies strictly inside ``root``."""
    parent = path.parent
    if root is None or parent == root or not parent.is_relative_to(root):
        return
    try:
        parent.rmdir()
    except OSError:  # not empty (another file of the same content), or already gone
        pass


def read_and_delete(path: str | os.PathLike, root: str | os.PathLike | None = None) -> bytes:
    """The file's bytes, read once; the file, and its folder when it is empty and inside
    ``root``, are deleted before returning. Raises FileNotFoundError when it is gone."""
    path = Path(path)
    data = path.read_bytes()
    try:
        path.unlink()
    except FileNotFoundError:  # deleted meanwhile by a sweep: the bytes are read already
        pass
    _remove_empty_parent(path, Path(root).resolve() if root is not None else None)
    return data


def delete_older_than(paths: MutableSet[str], age_s: float | None,
                      root: str | os.PathLike | None = None, keep: Iterable[str] = (),
                      now: float | None = None) -> int:
    """Delete the files of ``paths`` changed more than ``age_s`` seconds ago (all of them when
    ``age_s`` is None), except those in ``keep``; empty folders inside ``root`` go with them.
    Deleted (or already missing) paths are removed from the set; returns how many files were
    deleted."""
    keep = set(keep)
    now = time.time() if now is None else now
    root_path = Path(root).resolve() if root is not None else None
    removed, done = 0, set()
    for name in list(paths):
        if name in keep:
            continue
        path = Path(name)
        try:
            if age_s is not None and now - path.lstat().st_ctime <= age_s:
                continue
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        done.add(name)
        _remove_empty_parent(path, root_path)
    paths -= done
    return removed


class RecentPhotos:
    """Each session's last photo, as bytes in memory (never on disk), for ``ttl_s`` seconds
    after it was last used, so that a visitor can try other settings without uploading again.

    Keyed by (session, upload name): another session cannot reach it. At most ``max_bytes``
    in all (the oldest go first)."""

    def __init__(self, ttl_s: float = 600, max_bytes: int = 256 * 2**20):
        self.ttl_s, self.max_bytes = float(ttl_s), int(max_bytes)
        self._items: OrderedDict[str, tuple[str, bytes, float]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, session: str, name: str, data: bytes) -> None:
        with self._lock:
            self._items.pop(session, None)
            self._items[session] = (name, data, time.monotonic())
            self._trim()

    def get(self, session: str, name: str) -> bytes | None:
        """The bytes of ``name`` if it is this session's last photo and still kept."""
        with self._lock:
            self._expire()
            item = self._items.get(session)
            if item is None or item[0] != name:
                return None
            self._items[session] = (name, item[1], time.monotonic())  # used: kept longer
            self._items.move_to_end(session)
            return item[1]

    def forget(self, session: str) -> None:
        with self._lock:
            self._items.pop(session, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def expire(self) -> None:
        with self._lock:
            self._expire()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _expire(self) -> None:
        now = time.monotonic()
        for session in [s for s, (_, _, t) in self._items.items() if now - t > self.ttl_s]:
            del self._items[session]

    def _trim(self) -> None:
        total = sum(len(d) for _, d, _ in self._items.values())
        while self._items and total > self.max_bytes:
            _, (_, data, _) = self._items.popitem(last=False)
            total -= len(data)


class VisitorFiles:
    """The rules applied to a web framework's files.

    uploads: the set the framework adds each upload's path to; temp_sets(): every set of paths
    it wrote (uploads, results); shared(): paths kept for every visitor (the example's copy;
    an upload of the very same bytes and name lands on the same path); root: its temporary
    folder (empty folders inside it are removed with their last file)."""

    def __init__(self, rules: FileRules, uploads: MutableSet[str],
                 temp_sets: Callable[[], Iterable[MutableSet[str]]],
                 shared: Callable[[], Iterable[str]], root: str | os.PathLike):
        self.rules, self.uploads, self.temp_sets, self.shared = rules, uploads, temp_sets, shared
        self.root = root
        self.photos = RecentPhotos(rules.memory_s)
        self.results: set[str] = set()   # result files the app wrote itself (a clip)
        self._results_lock = threading.Lock()

    def add_result(self, path: str | os.PathLike) -> None:
        """A result file the app wrote (not the framework): deleted on the results'
        schedule, and when the server stops."""
        with self._results_lock:
            self.results.add(os.path.abspath(path))

    def photo_bytes(self, path: str | os.PathLike, session: str,
                    gone: str = PHOTO_GONE) -> bytes:
        """The photo (or clip) a run was given: an upload is read once and deleted (its bytes
        then kept in this session's memory); a shared file is read and kept. ``gone``: the
        sentence when it is no longer there."""
        name = os.path.abspath(path)
        upload = next((u for u in list(self.uploads) if os.path.abspath(u) == name), None)
        if upload is not None and name not in {os.path.abspath(k) for k in self.shared()}:
            self.uploads.discard(upload)
            try:
                data = read_and_delete(name, self.root)
            except FileNotFoundError:  # swept while the request waited in the queue
                data = self.photos.get(session, name)
            if data is None:
                raise RequestError(gone)
            self.photos.put(session, name, data)
            return data
        data = self.photos.get(session, name)  # this visitor's photo, read before
        if data is not None:
            return data
        if upload is not None or Path(name).is_file():
            return Path(name).read_bytes()
        raise RequestError(gone)

    def sweep(self, final: bool = False) -> None:
        """Delete what the rules say is due; everything but the shared files when ``final``
        (the server stops)."""
        keep = set(self.shared())
        delete_older_than(self.uploads, None if final else self.rules.unused_upload_s,
                          self.root, keep)
        for files in self.temp_sets():
            if files is not self.uploads:
                delete_older_than(files, None if final else self.rules.result_s, self.root,
                                  keep)
        with self._results_lock:
            delete_older_than(self.results, None if final else self.rules.result_s, self.root,
                              keep)
        self.photos.clear() if final else self.photos.expire()
