"""The master secret of a dataset run and the per-item seeds derived from it.

Each item's secret is HMAC-SHA256(secret, context ‖ salt ‖ item id) (a photo's seed is its
first 63 bits; a video clip's per-track coins are HMAC of it and the track), where the salt
is 16 random bytes drawn when the run starts and kept in its ``run.json``: a resumed run
reproduces every output exactly, two runs (two datasets whose ids are both ``row-0, row-1,
…``) never share coins under one key, and anyone without the key can neither replay an
item's DP draw nor tell two items' seeds apart. The key file therefore must stay apart from
the outputs: it is created owner-only (0600) outside the output folder, an existing one that
group or others could read is refused, and beside the outputs there is only a keyed
fingerprint of it (HMAC(secret, fixed label): it reveals nothing about the key, and tells a
resumed run that it was given the same one).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from ..image.names import shown

__all__ = ["KeyFileError", "default_key_path", "load_or_create_key", "item_seed",
           "item_secret", "key_fingerprint", "new_salt", "check_salt", "MAX_KEY_FILE_BYTES"]

KEY_BYTES = 32
SALT_BYTES = 16
#: A key file is one line of hex; anything longer is not one (and is not read whole).
MAX_KEY_FILE_BYTES = 4096
_SEED_CONTEXT = b"lreorg-hub dataset item seed v2\x00"
_FINGERPRINT_LABEL = b"lreorg key fingerprint v1"


class KeyFileError(ValueError):
    """The key file cannot be used (unreadable, malformed, exposed, inside the outputs)."""


def default_key_path(out: str | Path) -> Path:
    """Where a run's key lives when no ``--key-file`` is given: the user's config folder
    (``$XDG_CONFIG_HOME`` or ~/.config), one file per output folder, never inside it."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    tag = hashlib.sha256(str(Path(out).expanduser().resolve()).encode()).hexdigest()[:16]
    return base / "lreorg" / "dataset-keys" / f"{tag}.key"


def is_within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it, after resolving links."""
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def _check_file(path: Path, st: os.stat_result) -> None:
    """A key file is a small regular file that only its owner can read (checked on the
    file's status, before and after opening: never on its content)."""
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a folder"
                if stat.S_ISDIR(st.st_mode) else "a device or socket")
        raise KeyFileError(f"the key file {shown(path)} is {kind}, not a regular file: not read;"
                           f" give the file lreorg wrote (or a new path to create one)")
    if st.st_size > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"the key file {shown(path)} holds {st.st_size:,} bytes, more than a "
                           f"key file's {MAX_KEY_FILE_BYTES:,}: not read; give the file lreorg "
                           f"wrote")
    if st.st_mode & 0o077:
        raise KeyFileError(f"the key file {shown(path)} can be read or written by others "
                           f"(mode {stat.S_IMODE(st.st_mode):03o}): make it owner-only with "
                           f"`chmod 600 {shown(path)}` and check that nobody copied it")


def _read_key(path: Path) -> bytes:
    try:
        _check_file(path, os.stat(path))  # a link the user made is followed, to a file only
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except KeyFileError:
        raise
    except OSError as e:
        raise KeyFileError(f"cannot read the key file {shown(path)}: {e.strerror or e}") \
            from None
    with os.fdopen(fd, "rb") as f:
        _check_file(path, os.fstat(f.fileno()))  # the file opened is the file checked
        data = f.read(MAX_KEY_FILE_BYTES + 1)
    try:
        key = bytes.fromhex(data.decode("ascii").strip())
    except (ValueError, UnicodeDecodeError) as e:
        raise KeyFileError(f"cannot read the key file {shown(path)}: expected the hex secret "
                           f"that lreorg wrote ({type(e).__name__})") from None
    if len(key) < 16:
        raise KeyFileError(f"the key file {shown(path)} holds {len(key)} bytes; at least 16 "
                           f"are needed")
    return key


def load_or_create_key(path: str | Path, out: str | Path) -> tuple[bytes, bool]:
    """Read the secret at ``path`` (``~`` expanded), or create it (random, mode 0600) if
    absent. Returns (secret, created). Refuses a key file inside the output folder ``out``,
    one that group or others can read or write, and anything but a small regular file."""
    path = Path(path).expanduser()
    if is_within(path, Path(out).expanduser()):
        raise KeyFileError(f"the key file {shown(path)} is inside the output folder "
                           f"{shown(out)}: keep it apart from the outputs (anyone holding it "
                           f"can replay the draws)")
    if os.path.lexists(path):
        return _read_key(path), False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(KEY_BYTES)
        # O_EXCL: never overwrite a key another run just created; 0600 from the first byte.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     stat.S_IRUSR | stat.S_IWUSR)
    except OSError as e:
        raise KeyFileError(f"cannot create the key file {shown(path)}: {e.strerror or e}") \
            from None
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), stat.S_IRUSR | stat.S_IWUSR)  # whatever the umask
        f.write(key.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    return key, True


def key_fingerprint(key: bytes) -> str:
    """HMAC-SHA256(key, fixed label), hex: the same key gives the same fingerprint, and the
    fingerprint says nothing about the key (stored in run.json to refuse a resume with
    another key)."""
    return hmac.new(key, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()


def new_salt() -> str:
    """A run's salt, hex (16 random bytes): binds every item seed to this run."""
    return secrets.token_hex(SALT_BYTES)


def check_salt(salt: str) -> bytes:
    """A run's salt as bytes: 16 of them, written in hex."""
    try:
        raw = bytes.fromhex(salt)
    except (ValueError, TypeError):
        raw = b""
    if len(raw) != SALT_BYTES:
        raise ValueError(f"a run's salt is {SALT_BYTES} bytes written in hex "
                         f"({2 * SALT_BYTES} characters), got {salt!r}")
    return raw


def item_secret(key: bytes, salt: str, item_id: str) -> bytes:
    """One item's secret: HMAC-SHA256(key, context ‖ salt ‖ id). A photo's seed is its first
    63 bits (:func:`item_seed`); a clip's per-track coins are HMAC(this secret, track id).
    The salt has a fixed length (16 bytes), so (salt, id) pairs cannot run into each other."""
    from ..method.rng import derive_secret

    return derive_secret(key, item_id, _SEED_CONTEXT + check_salt(salt))


def item_seed(key: bytes, salt: str, item_id: str) -> int:
    """The 63-bit seed of one item: the first 8 bytes of :func:`item_secret`, shifted."""
    from ..method.rng import derive_seed

    return int(derive_seed(key, item_id, _SEED_CONTEXT + check_salt(salt)))
