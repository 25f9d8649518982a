"""File names in messages: one line, whatever the name holds.

Plain Python (no torch), so that the command line's argument checks can use it before
anything heavy is imported.
"""

from __future__ import annotations

import os

__all__ = ["shown", "described"]


def shown(name: object) -> str:
    """A file name (or any text) as it may appear in a one-line message: newlines, tabs,
    terminal escapes, invisible and undecodable characters are written as Python escapes
    (``\\n``, ``\\x1b``, ``\\u202e``, ``\\udcff``), everything else as it is. Every message
    that names a file goes through here, so a name cannot break a message in two or pass
    for another line of output."""
    text = os.fsdecode(name) if isinstance(name, (bytes, os.PathLike)) else str(name)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def described(source: object) -> str:
    """A short name for what was read (a path, bytes in memory, a file object), for the
    messages of the photo and video readers."""
    if isinstance(source, (str, os.PathLike)):
        return f"'{shown(source)}'"
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes in memory>"
    name = getattr(source, "name", None)
    if isinstance(name, str):
        return repr(name)
    return f"<{type(source).__name__}>"
