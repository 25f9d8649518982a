"""The tracker on detections whose truth is known: linking, prediction between detections,
misses, ends of tracks, and the One Euro smoothing of boxes and landmarks."""

import numpy as np
import pytest

from lreorg_hub.image.faces import Detection
from lreorg_hub.pipeline.tracking import (DETECTED, MISSED, PREDICTED, OneEuroFilter, Tracker,
                                          TrackerSettings)

FPS = 30.0
LANDMARKS = np.array([[-12, -8], [12, -8], [0, 4], [-9, 14], [9, 14]], dtype=np.float64)


def face(cx: float, cy: float = 60.0, side: float = 50.0, score: float = 0.99) -> Detection:
    box = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])
    return Detection(box=box, landmarks=LANDMARKS * side / 50 + [cx, cy], score=score)


def centre(f) -> float:
    return float((f.box[0] + f.box[2]) / 2)


def test_two_faces_crossing_keep_their_tracks_through_the_occlusion():
    """A moves right, B left; while they overlap only the front one (B) is found."""
    tracker, seen = Tracker(), {}
    for i in range(40):
        a, b = 40 + 5 * i, 240 - 5 * i
        detections = [face(b)] if abs(a - b) < 45 else [face(a), face(b)]
        for f in tracker.update(i / FPS, detections):
            seen.setdefault(f.track, []).append((i, centre(f), f.state))
    assert sorted(seen) == [0, 1]                       # no third track, no swap
    xs = {t: [x for _, x, _ in seen[t]] for t in seen}
    moving = {t: np.sign(np.diff(x)) for t, x in xs.items()}
    assert (moving[0] > 0).all() and (moving[1] < 0).all()
    hidden = [i for i, _, s in seen[0] if s == MISSED]
    assert hidden and all(abs((40 + 5 * i) - (240 - 5 * i)) < 45 for i in hidden)
    for i, x, state in seen[0]:                   # smoothed, and predicted while hidden
        assert abs(x - (40 + 5 * i)) < 5, (i, x, state)   # a tenth of the face


def test_a_face_missed_for_a_few_frames_keeps_its_track_longer_ends_it():
    settings = TrackerSettings(max_missed=4)
    tracker = Tracker(settings)
    states = []
    for i in range(30):
        gone = 10 <= i < 13 or 18 <= i < 25             # 3 frames: kept; 7 frames: ended
        out = tracker.update(i / FPS, [] if gone else [face(60 + 2 * i)])
        states.append([(f.track, f.state, f.landmarks is None) for f in out])
    assert states[11] == [(0, MISSED, True)] and states[13] == [(0, DETECTED, False)]
    assert states[21] == [(0, MISSED, True)] and states[23] == []   # after 4 misses: ended
    assert states[25] == [(1, DETECTED, False)]                     # back: a new track


def test_frames_without_detection_are_predicted_at_constant_velocity():
    tracker = Tracker(TrackerSettings(min_cutoff=1e6))   # no smoothing: exact motion
    for i in range(3):
        tracker.update(i / FPS, [face(50 + 3 * i)])
    (f,) = tracker.update(3 / FPS, None)
    assert f.state == PREDICTED and f.track == 0
    assert centre(f) == pytest.approx(59.0)
    assert np.allclose(f.landmarks, LANDMARKS + [59.0, 60.0])   # moved with the box


def test_smoothing_removes_jitter_and_returns_a_still_input_exactly():
    rng = np.random.default_rng(0)
    raw, smooth = [], []
    tracker = Tracker()
    for i in range(90):
        d = face(100)
        d.landmarks = d.landmarks + rng.normal(0, 1.0, d.landmarks.shape)
        (f,) = tracker.update(i / FPS, [d])
        raw.append(d.landmarks)
        smooth.append(f.landmarks)
    jitter = lambda seq: np.abs(np.diff(np.stack(seq), axis=0)).mean()
    assert jitter(smooth) < 0.35 * jitter(raw)
    still = Tracker()
    outs = [still.update(i / FPS, [face(100)])[0] for i in range(10)]
    assert all(np.array_equal(o.landmarks, outs[0].landmarks) and
               np.array_equal(o.box, outs[0].box) for o in outs)


def test_one_euro_follows_motion_with_little_lag():
    settings = TrackerSettings()
    f = OneEuroFilter(settings.min_cutoff, settings.beta)
    speed = 150.0                                        # px / s, 3 face sizes per second
    lags = [speed * i / FPS - f(np.array([speed * i / FPS]), i / FPS, scale=50)[0]
            for i in range(60)]
    assert max(lags) < 0.08 * 50 and 0 <= lags[-1] < 0.03 * 50   # start-up, then steady
    ema, alpha = 0.0, OneEuroFilter._alpha(settings.min_cutoff, 1 / FPS)  # without beta
    for i in range(60):
        ema += alpha * (speed * i / FPS - ema)
    assert speed * 59 / FPS - ema > 10 * lags[-1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(iou_threshold=0), "iou_threshold must be in (0, 1]"),
    (dict(max_missed=-1), "max_missed must be a whole number of frames in 0..10000"),
    (dict(beta=float("nan")), "beta must be a finite number >= 0"),
])
def test_bad_settings_are_one_sentence(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrackerSettings(**kwargs)
