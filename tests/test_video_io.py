"""Video files in and out through PyAV: every frame with its timing (variable frame rate),
the duration, the rotation, the audio packets unchanged, no metadata of the input, nothing
half-written, and one sentence for every bad input."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from lreorg_hub.demo_clips import write_clip
from lreorg_hub.image.video import VideoLimits, VideoLoadError, VideoReader, probe_video
from lreorg_hub.image.video_writer import VideoWriter

PTS = [0, 33, 66, 150, 183, 400, 433, 466, 500, 700, 733, 766]   # ms: a variable rate
LOCATION = "+48.8584+002.2945/"


def ramp(i: int, size=(48, 64)) -> np.ndarray:
    """A frame no two of which are alike and whose orientation shows (a ramp + a corner)."""
    h, w = size
    frame = np.zeros((h, w, 3), np.uint8)
    frame[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    frame[..., 1] = (i * 20) % 256
    frame[:8, :8, 2] = 255                      # the top-left corner marks "up"
    return frame


def packets(path, kind):
    with av.open(str(path)) as c:
        stream = getattr(c.streams, kind)[0]
        return [(bytes(p), p.pts, p.duration) for p in c.demux(stream) if p.size]


def timing(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [(f.pts, f.duration, f.rotation) for f in c.decode(s)], s.time_base


@pytest.fixture
def phone_clip(tmp_path):
    """A phone-like clip: stored sideways (display matrix 90°), variable frame rate, AAC
    audio, a location tag, device make and model, a telling stream handler name."""
    stored = [np.ascontiguousarray(np.rot90(ramp(i), -1)) for i in range(len(PTS))]
    return write_clip(tmp_path / "phone.mov", stored, pts=PTS, rotation=90, audio_seconds=0.8,
                      metadata={"location": LOCATION, "make": "Apple", "model": "iPhone 15"},
                      stream_metadata={"handler_name": "SecretHandler"})


def copy(src, dst, **kwargs):
    info = probe_video(src)
    with VideoWriter(dst, info, **kwargs) as writer:
        for frame in VideoReader(info):
            writer.write(frame.image, frame)
    return info, writer


def test_frames_timing_rotation_and_audio_are_kept(phone_clip, tmp_path):
    info, _ = copy(phone_clip, tmp_path / "out.mp4")
    assert info.rotation == 90 and info.size == (64, 48) and (info.width, info.height) == (48, 64)
    upright = [f.image for f in VideoReader(info)]
    assert len(upright) == len(PTS) and upright[0].shape == (48, 64, 3)
    assert upright[0][:8, :8, 2].mean() > 200          # read upright: the corner is top-left
    out = probe_video(tmp_path / "out.mp4")
    assert (out.rotation, out.size, out.duration, out.end) == \
        (90, info.size, info.duration, info.end)
    (before, tb), (after, tb_out) = timing(phone_clip), timing(tmp_path / "out.mp4")
    assert tb == tb_out and [t[0] for t in before] == [p * 16 for p in PTS]  # 1/16000 s
    assert [(t[0], t[2]) for t in after] == [(t[0], t[2]) for t in before]  # pts, rotation
    ends = [t[0] for t in after[1:]] + [info.end]        # each frame lasts until the next
    assert [t[1] for t in after] == [e - t[0] for e, t in zip(ends, after)]
    assert packets(tmp_path / "out.mp4", "audio") == packets(phone_clip, "audio")


def test_no_metadata_of_the_input_is_carried_over(phone_clip, tmp_path):
    data = phone_clip.read_bytes()
    for secret in (b"\xa9xyz", LOCATION.encode(), b"\xa9mak", b"Apple", b"\xa9mod",
                   b"iPhone 15", b"SecretHandler"):
        assert secret in data                            # the input really carries them
    copy(phone_clip, tmp_path / "out.mp4")
    out = (tmp_path / "out.mp4").read_bytes()
    for secret in (b"\xa9xyz", LOCATION.encode(), b"\xa9mak", b"Apple", b"\xa9mod", b"iPhone",
                   b"SecretHandler", b"loci", b"Lavf"):
        assert secret not in out, secret
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert not {k for k in c.metadata if k not in ("major_brand", "minor_version",
                                                       "compatible_brands")}


def test_webm_reencodes_audio_it_cannot_hold_and_mp4_without_audio(phone_clip, tmp_path):
    _, writer = copy(phone_clip, tmp_path / "out.webm", container="webm")
    assert writer.audio_note == ("the audio (aac) was re-encoded to opus: the webm container "
                                 "cannot hold aac")
    with av.open(str(tmp_path / "out.webm")) as c:
        assert (c.streams.video[0].codec_context.name, c.streams.audio[0].codec_context.name) \
            == ("vp9", "opus")
        assert len(list(c.decode(video=0))) == len(PTS)
    copy(phone_clip, tmp_path / "silent.mp4", audio=False)
    assert probe_video(tmp_path / "silent.mp4").audio is None


def test_odd_sizes_are_padded_for_h264_and_lossless_quality_keeps_pixels(tmp_path):
    frames = [ramp(i, (47, 63)) for i in range(4)]
    src = write_clip(tmp_path / "odd.mkv", frames, codec="ffv1")
    copy(src, tmp_path / "odd.mp4")
    assert probe_video(tmp_path / "odd.mp4").size == (64, 48)
    copy(src, tmp_path / "odd.webm", container="webm")
    assert probe_video(tmp_path / "odd.webm").size == (63, 47)


@pytest.mark.parametrize("failure", [RuntimeError("crash"), KeyboardInterrupt()])
def test_nothing_half_written(phone_clip, tmp_path, failure):
    info = probe_video(phone_clip)
    target = tmp_path / "out" / "clip.mp4"
    target.parent.mkdir()
    with pytest.raises(type(failure)):
        with VideoWriter(target, info) as writer:
            for frame in VideoReader(info):
                writer.write(frame.image, frame)
                if frame.index == 5:
                    raise failure
    assert list(target.parent.iterdir()) == []


def _audio_only(path):
    with av.open(str(path), "w") as out:
        s = out.add_stream("aac", rate=48000, layout="mono")
        for k in range(5):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
            f.sample_rate, f.pts = 48000, k * 1024
            out.mux(s.encode(f))
        out.mux(s.encode())


def _zero_frames(path):
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=30)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        s = out.add_stream("aac", rate=48000, layout="mono")
        f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                       layout="mono")
        f.sample_rate, f.pts = 48000, 0
        out.mux(s.encode(f))
        out.mux(s.encode())


def bad_inputs(tmp: Path) -> dict:
    """name → (file, the sentence it must get): the bad inputs of the issue's table."""
    frames = [np.random.default_rng(i).integers(0, 255, (48, 64, 3), np.uint8)
              for i in range(30)]
    good = write_clip(tmp / "good.mp4", frames)
    faststart = tmp / "fs.mp4"
    with av.open(str(faststart), "w", options={"movflags": "faststart"}) as out:
        v = out.add_stream("libx264", rate=30)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        for i, a in enumerate(frames):
            f = av.VideoFrame.from_ndarray(a, format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode())
    data = faststart.read_bytes()
    (tmp / "cut.mp4").write_bytes(data[:len(data) // 2])
    (tmp / "truncated.mp4").write_bytes(good.read_bytes()[:good.stat().st_size // 2])
    corrupt = bytearray(data)
    corrupt[len(data) // 3:len(data) // 3 + 2000] = b"\x55" * 2000
    (tmp / "corrupt.mp4").write_bytes(bytes(corrupt))
    (tmp / "empty.mp4").write_bytes(b"")
    (tmp / "text.mp4").write_text("this is a text file, not a video")
    _audio_only(tmp / "audio.mp4")
    _zero_frames(tmp / "zero.mkv")
    avi = write_clip(tmp / "a.avi", frames[:5], codec="mpeg4").read_bytes()
    (tmp / "codec.avi").write_bytes(avi.replace(b"FMP4", b"ZZZZ"))
    write_clip(tmp / "tiny.mp4", [np.zeros((8, 8, 3), np.uint8)] * 3)
    write_clip(tmp / "fast.mp4", frames[:10], pts=list(range(10)), fps=1_000_000,
               time_base=Fraction(1, 1_000_000))
    return {
        "truncated (index lost)": (tmp / "truncated.mp4", "damaged or incomplete"),
        "truncated (cut short)": (tmp / "cut.mp4", "it ends early, only "),
        "corrupt bytes": (tmp / "corrupt.mp4", "decoding stopped at frame"),
        "empty file": (tmp / "empty.mp4", "the file is empty"),
        "text renamed .mp4": (tmp / "text.mp4", "not a video FFmpeg can open"),
        "audio only": (tmp / "audio.mp4", "it holds audio only, no video stream"),
        "zero-length clip": (tmp / "zero.mkv", "it holds no video frames (a zero-length "
                                               "clip)"),
        "unsupported codec": (tmp / "codec.avi", "its video codec is not supported"),
        "absurd size (8x8)": (tmp / "tiny.mp4", "is 8x8 pixels: frame sides must be in "
                                                "16..8192"),
        "absurd frame rate": (tmp / "fast.mp4", "claims 1e+06 frames per second"),
        "missing file": (tmp / "nothere.mp4", "no such file"),
    }


def test_bad_inputs_get_one_sentence(tmp_path):
    for name, (path, message) in bad_inputs(tmp_path).items():
        with pytest.raises(VideoLoadError) as err:
            info = probe_video(path)
            for _ in VideoReader(info):
                pass
        text = str(err.value)
        assert message in text, (name, text)
        assert "\n" not in text and repr(str(path)) in text, name
        if name == "truncated (cut short)":
            assert text.endswith("of the 30 frames its index lists could be decoded (the file "
                                 "was cut short)")


def test_limits_of_size_duration_and_frames(tmp_path):
    src = write_clip(tmp_path / "c.mp4", [ramp(i) for i in range(30)], fps=10)
    for limits, message in [
            (VideoLimits(max_pixels=1000), "48 = 3,072 pixels per frame, more than the limit "
                                           "of 1,000"),
            (VideoLimits(max_duration=2), "lasts 3.0 s, longer than the limit of 2 s"),
            (VideoLimits(max_frames=20), "has about 30 frames, more than the limit of 20")]:
        with pytest.raises(VideoLoadError, match=message):
            probe_video(src, limits)
    assert probe_video(src, VideoLimits(max_duration=3.5, max_frames=30)).frames == 30
