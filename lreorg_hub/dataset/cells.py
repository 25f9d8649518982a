"""The bytes of one dataset item, read so that an item can never make the run read the machine.

- Every item is capped at ``MAX_ITEM_BYTES`` (a cell's bytes, or the file a cell or a folder
  item names), checked on the file's size before anything is read.
- A table cell's ``path`` (the ``datasets`` ``Image`` convention ``{bytes, path}``; a cell with
  a path and no bytes is an image stored beside the table) is read only below a root: the
  table's own folder, or the folder given with ``--cell-root``. Absolute paths (unless below
  an explicit ``--cell-root``), ``..`` components, links that lead out of the root, anything
  under /proc, /sys or /dev, anything inside ``--out``, and anything but a regular file are
  per-item errors, never opened. FIFOs and devices are recognised by ``lstat`` before any
  ``open``; the file opened (``O_NOFOLLOW | O_NONBLOCK``) must be the one checked.

Errors are public (they go into the item's record): they never repeat the cell's path, which
may name a person; the private log (``--private-log``) has it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["MAX_ITEM_BYTES", "ItemError", "CellRoot", "read_item_file", "check_cell_bytes"]

#: The most bytes one dataset item may hold (an image cell, or the file it or a folder item
#: names): enough for a 50-megapixel photo stored uncompressed (8-bit RGB: 150 MB).
MAX_ITEM_BYTES = 160 * 2 ** 20

SYSTEM_FOLDERS = (Path("/proc"), Path("/sys"), Path("/dev"))


class ItemError(ValueError):
    """One item cannot be read (recorded for that item; the run goes on)."""


def _too_big(size: int) -> str:
    return f"{size:,} bytes, more than the limit of {MAX_ITEM_BYTES:,} bytes for one item; " \
           f"not read"


def check_cell_bytes(data: bytes) -> bytes:
    if len(data) > MAX_ITEM_BYTES:
        raise ItemError(f"the image cell holds {_too_big(len(data))}")
    return data


def read_item_file(path: str | Path, *, follow: bool) -> bytes:
    """A regular file's bytes, at most ``MAX_ITEM_BYTES``; its status is checked before it is
    opened (a FIFO would block, a device would never end) and again once open. Errors say
    why in a few words (the caller says which file)."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        raise ItemError("a link to nothing; not read" if os.path.islink(path)
                        else "no such file") from None
    except OSError as e:
        raise ItemError(f"cannot be read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ItemError("not a regular file (a FIFO, socket or device); not read")
    if st.st_size > MAX_ITEM_BYTES:
        raise ItemError(_too_big(st.st_size))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
                     | (0 if follow else os.O_NOFOLLOW))
    except OSError as e:
        raise ItemError(f"cannot be read ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        now = os.fstat(f.fileno())
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(now.st_mode):
            raise ItemError("changed while it was opened; not read")
        data = f.read(MAX_ITEM_BYTES + 1)
    if len(data) > MAX_ITEM_BYTES:
        raise ItemError(_too_big(len(data)))
    return data


class CellRoot:
    """Where a table's cell paths may lead: below ``root`` (the table's folder, or the
    explicit ``--cell-root``), never into ``out``."""

    def __init__(self, root: str | Path, *, explicit: bool, out: str | Path | None = None):
        self.root = Path(os.path.realpath(Path(root).expanduser()))
        self.explicit = explicit
        self.out = Path(os.path.realpath(out)) if out is not None else None
        self.label = "--cell-root" if explicit else "the table's folder"

    def resolve(self, text: str) -> Path:
        """The real path a cell names, or an ``ItemError`` saying why it is not read."""
        if not text or "\x00" in text:
            raise ItemError("the image cell's path is empty or holds a NUL character")
        given = Path(text)
        if ".." in given.parts:
            raise ItemError("the image cell's path climbs out of its folder ('..'): not read")
        if given.is_absolute() and not self.explicit:
            raise ItemError("the image cell's path is absolute: only paths relative to the "
                            "table's folder are read (name the folder that holds the images "
                            "with --cell-root to read absolute paths below it)")
        real = Path(os.path.realpath(self.root / given))
        if real != self.root and self.root not in real.parents:
            raise ItemError(f"the image cell's path leads outside {self.label}"
                            f"{' (through a symbolic link)' if not given.is_absolute() else ''}"
                            f": not read")
        if any(real == s or s in real.parents for s in SYSTEM_FOLDERS):
            raise ItemError("the image cell's path leads to a system file (/proc, /sys or "
                            "/dev): not read")
        if self.out is not None and (real == self.out or self.out in real.parents):
            raise ItemError("the image cell's path leads into --out (an output, not an "
                            "original): not read")
        return real

    def read(self, text: str) -> bytes:
        real = self.resolve(text)
        try:
            return read_item_file(real, follow=False)  # real: no link left to follow
        except ItemError as e:
            raise ItemError(f"the file the image cell names: {e}") from None
