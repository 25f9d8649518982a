"""What a shard hands to the anonymizer (``ShardInput``), and the image suffixes a folder
source contributes: below both the layouts (``sources``, ``videos``) so that neither imports
the other's module to name them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ShardInput", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


@dataclass
class ShardInput:
    """One shard's items: ids, encoded image bytes (None where unreadable, with the error),
    and for table formats the shard's rows (an Arrow table, image column included). Where
    each item came from (``origins``: its path, or the table, row and cell path) is only for
    the private log."""

    shard: int
    ids: list[str]
    images: list[bytes | None]
    errors: list[str | None]
    table: object = None
    paths: list[str | None] = field(default_factory=list)  # image struct 'path' values
    origins: list[dict] = field(default_factory=list)

    def origin(self, i: int) -> dict:
        return self.origins[i] if i < len(self.origins) else {}
