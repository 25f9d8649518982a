"""The output folder of a run (``--out``), for `lreorg anonymize` and `anonymize-dataset`:
nothing outside it is ever written, and nothing in it is written half.

- :func:`refuse_overlap`, before anything is written: an input that is ``--out`` or lies
  inside it (a photo, a Parquet file, a saved dataset, a folder, or a link to one of those)
  is refused with one line, and so is ``--out`` inside a dataset's source folder.
- :class:`OutDir` opens the folder once; every path below it is reached one component at a
  time through folder descriptors opened with ``O_NOFOLLOW``. A symbolic link planted in
  ``--out`` is never followed: where a folder must be, it is an error that names it; where a
  file goes, the file replaces the link itself (a rename never touches a link's target).
  Every file is written under a fresh temporary name in its folder (``O_EXCL | O_NOFOLLOW``),
  flushed to disk and renamed over its name, so a reader or a rerun never sees half a file.
- :meth:`OutDir.lock`: ``fcntl.flock`` on ``--out/_lreorg/lock``; a second run on the same
  folder is refused with one line while the first holds it (the kernel releases it when the
  process ends, however it ends).

``--out`` itself may be a link (the user named it): it is resolved once, when opened.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import uuid
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

from ..image.names import shown

__all__ = ["OutDir", "OutputFolderError", "refuse_overlap", "WORK"]

WORK = "_lreorg"   # bookkeeping folder inside --out (the lock; a dataset run's manifest, …)
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMPORARY = re.compile(r"\..+\.tmp-[0-9a-f]{8}", re.DOTALL)   # what OutDir.writer names
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class OutputFolderError(ValueError):
    """--out cannot be used as asked (an input inside it, a link in the way, a second run)."""


def refuse_overlap(out: str | Path, inputs: Iterable[str | Path], *,
                   out_inside_inputs: bool) -> None:
    """One line if an input is ``out`` or lies inside it, after resolving links; with
    ``out_inside_inputs`` also if ``out`` lies inside an input folder (a dataset source)."""
    out = Path(out)
    out_real = Path(os.path.realpath(out))
    for given in inputs:
        real = Path(os.path.realpath(given))
        if real == out_real:
            raise OutputFolderError(f"--out {shown(out)} is the input {shown(given)} itself: "
                                    f"give another folder for the outputs (the originals are "
                                    f"never written to)")
        if out_real in real.parents:
            raise OutputFolderError(f"the input {shown(given)} lies inside --out {shown(out)}: "
                                    f"outputs could replace it; give an --out outside the "
                                    f"inputs")
        if out_inside_inputs and real in out_real.parents:
            raise OutputFolderError(f"--out {shown(out)} lies inside the source "
                                    f"{shown(given)}: give an --out outside it")


def _parts(rel: str | PurePosixPath) -> list[str]:
    text = str(rel)
    parts = text.split("/")
    if text.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise OutputFolderError(f"not a path inside --out: {shown(text)}")
    return parts


class OutDir:
    """``--out``, opened once; paths are relative to it (POSIX, no ``..``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self._fd: int | None = None
        self._lock_fd: int | None = None

    # -- opening and the lock ------------------------------------------------------------------
    def open(self, create: bool = True) -> "OutDir":
        if self._fd is not None:
            return self
        if create:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OutputFolderError(f"--out {shown(self.path)} cannot be created: "
                                        f"{e.strerror or e}") from None
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise OutputFolderError(f"--out {shown(self.path)} cannot be opened as a folder: "
                                    f"{e.strerror or e}") from None
        return self

    def close(self) -> None:
        for name in ("_lock_fd", "_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

    def __enter__(self) -> "OutDir":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def lock(self) -> None:
        """Hold ``_lreorg/lock`` until :meth:`close` (or the process ends)."""
        if self._lock_fd is not None:
            return
        folder = self._folder([WORK], create=True)
        try:
            fd = os.open("lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                         dir_fd=folder)
        except OSError as e:
            raise self._failure(f"{WORK}/lock", e) from None
        finally:
            os.close(folder)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise OutputFolderError(
                    f"another lreorg run is writing to --out {shown(self.path)} (it holds "
                    f"{shown(self.path / WORK / 'lock')}): wait for it to end, or use another "
                    f"--out") from None
            raise OutputFolderError(f"cannot lock --out {shown(self.path)} against a second "
                                    f"run: {e.strerror or e} (its file system has no locks; "
                                    f"use a local or NFS folder)") from None
        self._lock_fd = fd

    # -- folders -------------------------------------------------------------------------------
    def _root(self) -> int:
        if self._fd is None:
            self.open(create=False)
        return self._fd

    def _folder(self, parts: list[str], create: bool) -> int:
        """A descriptor of the folder ``parts`` below --out, every component opened without
        following links (created when missing if ``create``); the caller closes it."""
        fd = os.dup(self._root())
        for k, name in enumerate(parts):
            try:
                try:
                    child = os.open(name, _DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(name, 0o777, dir_fd=fd)
                    except FileExistsError:
                        pass  # made by a Ray actor at the same moment
                    child = os.open(name, _DIR, dir_fd=fd)
            except OSError as e:
                os.close(fd)
                raise self._failure("/".join(parts[:k + 1]), e, folder=True) from None
            os.close(fd)
            fd = child
        return fd

    def _failure(self, rel: str, error: OSError, folder: bool = False) -> Exception:
        where = self.path / rel
        if error.errno in (errno.ELOOP, errno.ENOTDIR) or (folder and isinstance(
                error, NotADirectoryError)):
            try:
                mode = os.lstat(where).st_mode
            except OSError:
                mode = 0
            if stat.S_ISLNK(mode):
                return OutputFolderError(f"{shown(where)} is a symbolic link, and links inside "
                                         f"--out are never followed: remove it, or use another "
                                         f"--out")
            if mode and not stat.S_ISDIR(mode):
                return OutputFolderError(f"cannot write below {shown(where)}: a file is in the "
                                         f"way")
        if isinstance(error, FileNotFoundError):
            return error
        return OutputFolderError(f"cannot write {shown(where)}: {error.strerror or error}")

    def _split(self, rel) -> tuple[list[str], str]:
        parts = _parts(rel)
        return parts[:-1], parts[-1]

    # -- files ---------------------------------------------------------------------------------
    @contextmanager
    def writer(self, rel: str | PurePosixPath) -> Iterator:
        """A binary file to write ``rel`` through; renamed over ``rel`` only when the block
        ends without an error (else removed)."""
        folders, name = self._split(rel)
        fd = self._folder(folders, create=True)
        tmp = f".{name}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            try:
                f = os.fdopen(os.open(tmp, _NEW_FILE, 0o666, dir_fd=fd), "wb")
            except OSError as e:
                raise self._failure(str(rel), e) from None
            try:
                with f:
                    yield f
                    f.flush()
                    os.fsync(f.fileno())
                try:
                    os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
                except IsADirectoryError:
                    raise OutputFolderError(f"cannot write {shown(self.path / str(rel))}: a "
                                            f"folder is in the way") from None
                except OSError as e:
                    raise self._failure(str(rel), e) from None
            except BaseException:
                try:
                    os.unlink(tmp, dir_fd=fd)
                except FileNotFoundError:
                    pass
                raise
        finally:
            os.close(fd)

    def write(self, rel: str | PurePosixPath, data: bytes) -> None:
        with self.writer(rel) as f:
            f.write(data)

    def append(self, rel: str | PurePosixPath, data: bytes) -> None:
        """Append and flush to disk (the dataset manifest); never through a link, symbolic
        or hard (a rename replaces a name, but an append writes into the file itself)."""
        folders, name = self._split(rel)
        fd = self._folder(folders, create=True)
        try:
            out = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o666, dir_fd=fd)
        except OSError as e:
            raise self._failure(str(rel), e) from None
        finally:
            os.close(fd)
        try:
            st = os.fstat(out)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:  # a hard link planted here
                raise OutputFolderError(f"cannot append to {shown(self.path / str(rel))}: it is "
                                        f"not a regular file with one name; remove it, or use "
                                        f"another --out")
            os.write(out, data)
            os.fsync(out)
        finally:
            os.close(out)

    def read(self, rel: str | PurePosixPath) -> bytes | None:
        """A regular file's bytes; None when it (or a folder on its way) does not exist."""
        if self._fd is None and not os.path.lexists(self.path):
            return None
        folders, name = self._split(rel)
        try:
            fd = self._folder(folders, create=False)
        except FileNotFoundError:
            return None
        try:
            try:
                src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                              dir_fd=fd)
            except FileNotFoundError:
                return None
            except OSError as e:
                raise self._failure(str(rel), e) from None
        finally:
            os.close(fd)
        with os.fdopen(src, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise OutputFolderError(f"{shown(self.path / str(rel))} is not a regular file")
            return f.read()

    def remove(self, rel: str | PurePosixPath) -> None:
        folders, name = self._split(rel)
        try:
            fd = self._folder(folders, create=False)
        except FileNotFoundError:
            return
        try:
            os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)

    def folder_path(self, rel: str | PurePosixPath) -> Path:
        """Create the folder ``rel`` (no link followed) and return its path, for a writer that
        takes only a path (``datasets``' ``save_to_disk``)."""
        os.close(self._folder(_parts(rel), create=True))
        return self.path / str(rel)

    def move_files_up(self, rel: str | PurePosixPath) -> None:
        """Rename every file of the folder ``rel`` into --out itself, then remove the folder."""
        fd = self._folder(_parts(rel), create=False)
        try:
            for name in os.listdir(fd):
                try:
                    os.replace(name, name, src_dir_fd=fd, dst_dir_fd=self._root())
                except IsADirectoryError:
                    raise OutputFolderError(f"cannot write {shown(self.path / name)}: a folder "
                                            f"is in the way") from None
        finally:
            os.close(fd)
        folders, name = self._split(rel)
        parent = self._folder(folders, create=False)
        try:
            os.rmdir(name, dir_fd=parent)
        finally:
            os.close(parent)

    def remove_stale_temporaries(self) -> None:
        """Temporary files a killed run left (``.NAME.tmp-`` + 8 hex digits, as
        :meth:`writer` names them); links are never followed."""
        for _, _, names, fd in os.fwalk(".", dir_fd=self._root(), follow_symlinks=False):
            for name in names:
                if _TEMPORARY.fullmatch(name) and stat.S_ISREG(
                        os.lstat(name, dir_fd=fd).st_mode):
                    os.unlink(name, dir_fd=fd)
