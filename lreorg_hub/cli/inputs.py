"""The photos a run reads and the files it writes: walking inputs safely (never opening a
FIFO, never following folder links), the --out folder, and atomic outputs."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

from ..image.video import VIDEO_SUFFIXES

__all__ = ["IMAGE_SUFFIXES", "collect_inputs", "prepare_out", "write_outputs",
           "describe_failure"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
INPUT_SUFFIXES = IMAGE_SUFFIXES | set(VIDEO_SUFFIXES)   # what a folder contributes


# Names at the top of --out that the run itself writes: a photo called summary.* gets
# summary_1.* so its JSON cannot overwrite the run's summary.
RESERVED_STEMS = {"summary"}


def _not_a_photo(path: Path) -> str | None:
    """Why ``path`` cannot be read as a photo (FIFO, device, loop, dangling link), or None.

    Never opens the path: opening a FIFO would block the run.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            return f"dangling symbolic link (its target {os.readlink(path)!r} does not exist)"
        return "no such file or folder"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop (the link points back to itself)"
        return f"cannot be read ({e.strerror or e})"
    if stat.S_ISFIFO(st.st_mode):
        return "a FIFO (named pipe), not a regular file: not read"
    if stat.S_ISSOCK(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return "a socket or device, not a regular file: not read"
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return "not a regular file: not read"
    return None


def _walk(folder: Path, skip: Path | None) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files under ``folder`` (sorted), and the entries that had to be skipped.

    Symbolic links to folders are not followed (no loops); links to files are.
    """
    files, problems = [], []
    for root, dirs, names in os.walk(folder, followlinks=False):
        here = Path(root)
        if skip is not None and _is_within(here, skip):
            dirs[:] = []
            continue
        for d in list(dirs):
            if (here / d).is_symlink():
                problems.append((str(here / d), "symbolic link to a folder: not followed"))
                dirs.remove(d)
        dirs.sort()
        for name in sorted(names):
            path = here / name
            if path.suffix.lower() not in INPUT_SUFFIXES:
                continue
            why = _not_a_photo(path)
            if why is None and path.is_dir():
                why = "a folder with an image suffix: not read"
            if why is None:
                files.append(path)
            else:
                problems.append((str(path), why))
    return sorted(files), problems


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def collect_inputs(paths: list[str], out_dir: Path | None = None
                    ) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    """(file, output stem relative to --out) for every input; folders are walked for images.

    Files named directly are tried whatever their suffix; a folder contributes its image files
    (recursively, never the --out folder), mirrored under --out. Paths that cannot be read
    (missing, FIFO, link loop, dangling link) are reported, not fatal.
    """
    found, problems, used = [], [], set(RESERVED_STEMS)
    for raw in paths:
        path = Path(raw)
        why = _not_a_photo(path)
        if why is not None:
            problems.append((raw, why))
            continue
        if path.is_dir():
            files, skipped = _walk(path, out_dir)
            problems.extend(skipped)
            pairs = [(p, p.relative_to(path).with_suffix("")) for p in files]
        else:
            pairs = [(path, Path(path.stem))]
        for file, stem in pairs:
            candidate, k = stem, 1
            while str(candidate) in used:  # two inputs with the same name: keep both
                candidate, k = stem.with_name(f"{stem.name}_{k}"), k + 1
            used.add(str(candidate))
            found.append((file, candidate))
    return found, problems


def prepare_out(out: str) -> Path:
    """--out must be (or become) a writable folder: checked before anything is loaded."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder: give a folder for the "
                         f"outputs")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {out} cannot be created: {e.strerror or e}") from None
    probe = path / f".lreorg-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"--out {out} is not writable: {e.strerror or e}") from None
    return path


def _save_png(image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")  # our images are fresh arrays: no metadata to carry


def write_outputs(result, stem: Path, out_dir: Path, save_crops: bool) -> None:
    """The photo's PNG (+ crops) and JSON; on any failure nothing half-written is left."""
    written: list[Path] = []
    png, meta = out_dir / stem.with_suffix(".png"), out_dir / stem.with_suffix(".json")
    try:
        for target in (png, meta):
            if target.is_dir():
                raise ValueError(f"cannot write {target}: a folder is in the way")
        crops = []
        if save_crops:
            folder = out_dir / stem.parent / f"{stem.name}_faces"
            for face in result.faces:
                crops.append((face.aligned, folder / f"face{face.index}_input.png"))
                if face.anonymized is not None:
                    crops.append((face.anonymized,
                                  folder / f"face{face.index}_anonymized.png"))
                crops.extend((sample, folder / f"face{face.index}_sample{k}.png")
                             for k, sample in enumerate(face.samples))
        for image, target in [(result.image, png), *crops]:
            written.append(target)
            _save_png(image, target)
        # The public record only: no input path (a file name can be a person's name), no
        # detector box or score (they single out the true input among candidates).
        record = {"output": str(stem.with_suffix(".png")), **result.to_dict()}
        written.append(meta)
        meta.write_text(json.dumps(record, indent=2))
    except BaseException:
        for target in written:
            if target.is_file():
                target.unlink()
        raise


def describe_failure(error: BaseException) -> str:
    """One line for the summary: our messages as they are, anything else with its type."""
    if isinstance(error, (ValueError, FileNotFoundError)):
        return str(error)
    if isinstance(error, OSError):
        return f"{error.strerror or error}" + (f": {error.filename}" if error.filename else "")
    if isinstance(error, MemoryError):
        return "ran out of memory on this photo"
    return f"unexpected error ({type(error).__name__}): {error}"
