"""The photos and videos a run reads and the files it writes: walking inputs safely (never opening a
FIFO, never following folder links), naming every input's outputs so that none overwrites
another, checking --out before anything is written, and writing the outputs (atomically,
never through a link: ``lreorg_hub.dataset.outdir``)."""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path, PurePosixPath

from ..image.names import shown
from ..image.video import UNTESTED_VIDEO, UNTESTED_VIDEO_SUFFIXES, VIDEO_SUFFIXES
from ..image.video_writer import CONTAINERS

__all__ = ["IMAGE_SUFFIXES", "collect_inputs", "check_out", "write_outputs",
           "describe_failure", "OutputNames", "NAMING_RULE"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
INPUT_SUFFIXES = IMAGE_SUFFIXES | set(VIDEO_SUFFIXES)   # what a folder contributes

#: How outputs are named, as the README and every summary.json state it.
NAMING_RULE = ("Each input's outputs are named after its path relative to the folder given "
               "(a file given directly: its own name) with its last suffix replaced: NAME.png, "
               "NAME.json and NAME_faces/ (a video: NAME.mp4, or .mkv / .webm as "
               "--video-format says, and NAME.json). Where that would clash, ignoring case, "
               "with the outputs of an earlier input (command-line order, then sorted paths) "
               "or with the run's own summary.json and _lreorg/, _1, _2, ... is appended to "
               "the clashing name, or to the clashing folder's name.")


class OutputNames:
    """The names the run's outputs take, claimed input by input (see ``NAMING_RULE``):
    compared case-folded, since some file systems ignore case."""

    def __init__(self):
        self._exclusive = {"summary.json", "_lreorg"}   # files and crop folders; ours
        self._folders: set[str] = set()                 # shared parents of outputs
        self._renamed: dict[tuple[str, ...], str] = {}  # input folder → its output folder

    def _taken(self, path: str, *, as_folder: bool) -> bool:
        key = path.casefold()
        return key in self._exclusive or (not as_folder and key in self._folders)

    def claim(self, stem: PurePosixPath) -> PurePosixPath:
        """The output stem (NAME) of an input whose path relative to its folder, without its
        last suffix, is ``stem``."""
        folders: list[str] = []
        for k, part in enumerate(stem.parts[:-1]):
            key = tuple(p.casefold() for p in stem.parts[:k + 1])
            if key not in self._renamed:
                name, n = part, 0
                while self._taken("/".join([*folders, name]), as_folder=True):
                    n += 1
                    name = f"{part}_{n}"
                self._renamed[key] = name
            folders.append(self._renamed[key])
            self._folders.add("/".join(folders).casefold())
        leaf, n = stem.name, 0
        while True:
            base = "/".join([*folders, leaf])
            outputs = (f"{base}.png", f"{base}.json", f"{base}_faces",
                       *(f"{base}.{kind}" for kind in CONTAINERS))  # a video's
            if not any(self._taken(o, as_folder=False) for o in outputs):
                break
            n += 1
            leaf = f"{stem.name}_{n}"
        self._exclusive.update(o.casefold() for o in outputs)
        return PurePosixPath(base)


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
    """Image and video files under ``folder`` (sorted), and the entries that had to be
    skipped.

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
            if path.suffix.lower() in UNTESTED_VIDEO_SUFFIXES:
                problems.append((str(path), UNTESTED_VIDEO.format(suffix=path.suffix)))
                continue
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
                   ) -> tuple[list[tuple[Path, PurePosixPath]], list[tuple[str, str]]]:
    """(file, output stem relative to --out) for every input; folders are walked for images
    and videos.

    Files named directly are tried whatever their suffix; a folder contributes its image and
    video files (recursively, never the --out folder), mirrored under --out. Paths that cannot
    be read (missing, FIFO, link loop, dangling link) are reported, not fatal. Output names
    follow ``NAMING_RULE``: no input's outputs overwrite another's.
    """
    found, problems, names = [], [], OutputNames()
    for raw in paths:
        path = Path(raw)
        why = _not_a_photo(path)
        if why is None and path.suffix.lower() in UNTESTED_VIDEO_SUFFIXES and path.is_file():
            why = UNTESTED_VIDEO.format(suffix=path.suffix)
        if why is not None:
            problems.append((raw, why))
            continue
        if path.is_dir():
            files, skipped = _walk(path, out_dir)
            problems.extend(skipped)
            pairs = [(p, PurePosixPath(p.relative_to(path).with_suffix("").as_posix()))
                     for p in files]
        else:
            pairs = [(path, PurePosixPath(path.stem))]
        found.extend((file, names.claim(stem)) for file, stem in pairs)
    return found, problems


def check_out(out: str) -> Path:
    """--out is a folder, or can be made one: checked before anything is loaded, without
    creating anything (a refused start writes nothing)."""
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {shown(out)} exists and is not a folder: give a folder for "
                         f"the outputs")
    existing = path
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"--out {shown(out)} cannot be created: Not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {shown(out)} is not writable: Permission denied")
    return path


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")  # our images are fresh arrays: no metadata to carry
    return buf.getvalue()


def write_outputs(result, stem: PurePosixPath, out, save_crops: bool) -> str:
    """The photo's PNG (+ crops) and JSON, each written atomically into ``out`` (an
    ``OutDir``); on any failure none of them is left. Returns the PNG's name."""
    import json

    written: list[str] = []
    png, meta = f"{stem}.png", f"{stem}.json"
    try:
        crops = []
        if save_crops:
            folder = f"{stem}_faces"
            for face in result.faces:
                crops.append((face.aligned, f"{folder}/face{face.index}_input.png"))
                if face.anonymized is not None:
                    crops.append((face.anonymized,
                                  f"{folder}/face{face.index}_anonymized.png"))
                crops.extend((sample, f"{folder}/face{face.index}_sample{k}.png")
                             for k, sample in enumerate(face.samples))
        for image, target in [(result.image, png), *crops]:
            out.write(target, _png(image))
            written.append(target)
        # The public record only (PipelineResult.to_dict → PrivacyRecord.to_dict): no input
        # path (a file name can be a person's name), no detector box or score.
        out.write(meta, json.dumps({"output": png, **result.to_dict()}, indent=2).encode())
    except BaseException:
        for target in written:
            out.remove(target)
        raise
    return png


def describe_failure(error: BaseException) -> str:
    """One line for the summary: our messages as they are, anything else with its type."""
    if isinstance(error, (ValueError, FileNotFoundError)):
        return shown(error)
    if isinstance(error, OSError):
        return f"{error.strerror or error}" + (f": {shown(error.filename)}" if error.filename
                                               else "")
    if isinstance(error, MemoryError):
        return "ran out of memory on this photo"
    return f"unexpected error ({type(error).__name__}): {shown(error)}"
