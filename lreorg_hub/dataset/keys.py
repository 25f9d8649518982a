"""The master secret of a dataset run and the per-item seeds derived from it.

Each item's seed is HMAC-SHA256(secret, item id): a rerun with the same key file reproduces
every output exactly, while anyone without the key can neither replay an item's DP draw nor
tell two items' seeds apart. The key file therefore must stay apart from the outputs: it is
created owner-only (0600) outside the output folder, and nothing about it (path, digest) is
written beside the outputs.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from pathlib import Path

__all__ = ["KeyFileError", "default_key_path", "load_or_create_key", "item_seed"]

KEY_BYTES = 32
_SEED_CONTEXT = b"lreorg-hub dataset item seed v1\x00"


class KeyFileError(ValueError):
    """The key file cannot be used (unreadable, malformed, inside the outputs)."""


def default_key_path(out: str | Path) -> Path:
    """Where a run's key lives when no ``--key-file`` is given: the user's config folder
    (``$XDG_CONFIG_HOME`` or ~/.config), one file per output folder, never inside it."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    tag = hashlib.sha256(str(Path(out).resolve()).encode()).hexdigest()[:16]
    return base / "lreorg" / "dataset-keys" / f"{tag}.key"


def is_within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it, after resolving links."""
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def load_or_create_key(path: str | Path, out: str | Path) -> tuple[bytes, bool]:
    """Read the secret at ``path``, or create it (random, mode 0600) if absent.

    Returns (secret, created). Refuses a key file inside the output folder ``out``.
    """
    path = Path(path)
    if is_within(path, Path(out)):
        raise KeyFileError(f"the key file {path} is inside the output folder {out}: keep it "
                           f"apart from the outputs (anyone holding it can replay the draws)")
    if path.exists():
        try:
            text = path.read_text().strip()
            key = bytes.fromhex(text)
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise KeyFileError(f"cannot read the key file {path}: expected the hex secret that"
                               f" lreorg wrote ({type(e).__name__})") from None
        if len(key) < 16:
            raise KeyFileError(f"the key file {path} holds {len(key)} bytes; at least 16 are "
                               f"needed")
        return key, False
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    # O_EXCL: never overwrite a key another run just created; 0600 from the first byte.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)  # in case the umask removed bits we need
    return key, True


def item_seed(key: bytes, item_id: str) -> int:
    """The 63-bit seed of one item: HMAC-SHA256(key, context ‖ id), first 8 bytes."""
    from ..method.rng import derive_seed

    return int(derive_seed(key, item_id, _SEED_CONTEXT))
