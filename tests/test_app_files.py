"""What the server keeps of a visitor's photo (lreorg_hub.serving.files): the upload read once
and deleted with its folder, ages of the files left, the per-session copy in memory."""

import time

import pytest

from lreorg_hub.serving import RecentPhotos, delete_older_than, read_and_delete


def _file(path, data=b"photo bytes"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_an_upload_is_read_once_then_deleted_with_its_folder(tmp_path):
    upload = _file(tmp_path / "cache" / "a1b2" / "selfie.jpg", b"\xff\xd8 exif gps")
    assert read_and_delete(upload, tmp_path / "cache") == b"\xff\xd8 exif gps"
    assert not upload.exists() and not upload.parent.exists()
    assert (tmp_path / "cache").is_dir()  # the root itself stays
    with pytest.raises(FileNotFoundError):
        read_and_delete(upload, tmp_path / "cache")


def test_a_folder_with_another_file_or_outside_the_root_stays(tmp_path):
    one = _file(tmp_path / "cache" / "same" / "a.jpg")
    other = _file(tmp_path / "cache" / "same" / "b.jpg")
    read_and_delete(one, tmp_path / "cache")
    assert other.is_file()
    outside = _file(tmp_path / "elsewhere" / "c.jpg")
    read_and_delete(outside, tmp_path / "cache")
    assert not outside.exists() and outside.parent.is_dir()


def test_files_past_their_age_are_deleted_and_forgotten_but_kept_ones_stay(tmp_path):
    root = tmp_path / "cache"
    first, second, kept = (_file(root / name / "image.png") for name in ("a", "b", "example"))
    paths = {str(first), str(second), str(kept), str(root / "gone" / "x.png")}
    later = max(p.lstat().st_ctime for p in (first, second, kept)) + 31
    deleted = delete_older_than(paths, 30, root, keep={str(kept)}, now=later)
    assert deleted == 2 and not first.exists() and not second.exists() and kept.is_file()
    assert not (root / "a").exists() and not (root / "b").exists()
    assert paths == {str(kept)}  # deleted and missing paths leave the set


def test_young_files_stay_until_their_age_and_all_go_at_shutdown(tmp_path):
    root = tmp_path / "cache"
    young = _file(root / "y" / "image.png")
    paths = {str(young)}
    assert delete_older_than(paths, 60, root, now=young.lstat().st_ctime + 59) == 0
    assert young.is_file() and paths == {str(young)}
    assert delete_older_than(paths, None, root) == 1  # shutdown: every file, whatever its age
    assert not young.exists() and paths == set()


def test_recent_photos_belong_to_their_session_and_expire(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    photos = RecentPhotos(ttl_s=600, max_bytes=10)
    photos.put("visitor-a", "/cache/1/selfie.jpg", b"abcd")
    assert photos.get("visitor-b", "/cache/1/selfie.jpg") is None  # another session
    assert photos.get("visitor-a", "/cache/2/other.jpg") is None   # another upload
    clock[0] += 599
    assert photos.get("visitor-a", "/cache/1/selfie.jpg") == b"abcd"  # used: kept longer
    clock[0] += 599
    assert photos.get("visitor-a", "/cache/1/selfie.jpg") == b"abcd"
    clock[0] += 601
    assert photos.get("visitor-a", "/cache/1/selfie.jpg") is None and len(photos) == 0
    photos.put("visitor-a", "x", b"123456")
    photos.put("visitor-b", "y", b"123456")  # over max_bytes: the oldest goes
    assert photos.get("visitor-a", "x") is None and photos.get("visitor-b", "y") == b"123456"
    photos.forget("visitor-b")
    assert len(photos) == 0
