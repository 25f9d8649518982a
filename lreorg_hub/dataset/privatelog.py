"""``--private-log FILE``: what the public records leave out, for whoever ran the job.

The records beside the outputs are public (``PrivacyRecord.to_dict``): no input path, no
detector box or score, no diagnostics, because a file name can be a person's name and boxes,
scores and the information loss together single out the true input among candidates. This
log holds exactly those, one JSON line per item: the input (path, or table and row and the
cell's path), the output, the status, and ``PipelineResult.diagnostics`` (every face's box and
detector score, the faces covered by the fallback, the CDFNet information loss).

It must never travel with the outputs: a path inside ``--out`` is refused (``--out`` is the
folder people publish or upload whole; a log beside the outputs would go with them). The file
is created owner-only (0600); an existing one is appended to only if it is a regular file
that only its owner can read, whose first line is one of this log's, and a link is not
followed; an input is never taken for the log.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from ..image.names import shown

__all__ = ["PrivateLog"]


class PrivateLog:
    """Checked when built (nothing is created), opened at the first write, appended to."""

    def __init__(self, path: str | Path, out: str | Path, inputs: list[str | Path] = ()):
        self.path = Path(path).expanduser()
        out_real = Path(os.path.realpath(Path(out).expanduser()))
        real = Path(os.path.realpath(self.path))
        if real == out_real or out_real in real.parents:
            raise ValueError(f"--private-log {shown(self.path)} lies inside --out "
                             f"{shown(out)}: it holds input paths and detector scores, and "
                             f"--out is what gets published; put the log outside it")
        for given in inputs:
            other = Path(os.path.realpath(given))
            if real == other or other in real.parents:
                raise ValueError(f"--private-log {shown(self.path)} is (inside) the input "
                                 f"{shown(given)}: put the log apart from the inputs")
        try:
            self._check(os.lstat(self.path))
            self._check_content()
        except FileNotFoundError:
            if not self.path.parent.is_dir():
                raise ValueError(f"--private-log {shown(self.path)}: its folder does not "
                                 f"exist") from None
        self._fd: int | None = None

    def _check(self, st: os.stat_result) -> None:
        if stat.S_ISLNK(st.st_mode):
            raise ValueError(f"--private-log {shown(self.path)} is a symbolic link: give the "
                             f"file itself")
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"--private-log {shown(self.path)} is not a regular file")
        if st.st_mode & 0o077:
            raise ValueError(f"--private-log {shown(self.path)} can be read or written by "
                             f"others (mode {stat.S_IMODE(st.st_mode):03o}): make it owner-only "
                             f"with `chmod 600 {shown(self.path)}`")

    def _check_content(self) -> None:
        """An existing log starts with one of its JSON lines (never append to another file)."""
        with open(self.path, "rb") as f:
            first = f.readline(1 << 16)
        if not first:
            return
        try:
            ok = isinstance(json.loads(first), dict)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"--private-log {shown(self.path)} exists and is not an lreorg "
                             f"private log: give a new file")

    def write(self, entries: list[dict]) -> None:
        """Append one JSON line per entry and flush them to disk."""
        if not entries:
            return
        if self._fd is None:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                         | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
            try:
                self._check(os.fstat(fd))
            except ValueError:
                os.close(fd)
                raise
            self._fd = fd
        data = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries).encode()
        os.write(self._fd, data)
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
