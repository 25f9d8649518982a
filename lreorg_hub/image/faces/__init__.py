"""Face detection (MTCNN), FFHQ-style alignment from five landmarks, and paste-back.

Geometry (``docs/CHECKPOINT_LAYOUTS.md`` §4): the FFHQ recipe turns the eye
and mouth landmarks into an oriented square, the *quad*, with corners UL, LL, LR, UR in 0-based
pixel-index coordinates of the photo. Aligned pixel (i, j) of an S×S crop (i = column, j = row)
shows the photo at

    q(i, j) = UL + ((i + 0.5) / S)·(UR − UL) + ((j + 0.5) / S)·(LL − UL)

— a similarity transform, stored as :class:`AlignTransform`, whose exact inverse is used to put
a generated face back.

Warping choices, and why:

Both warps are torch operations on the photo's device (:func:`align_faces`,
:func:`paste_faces`: a (3, H, W) uint8 photo tensor in, uint8 tensors out), so a pipeline on a GPU
keeps the crops there from alignment to paste-back. :func:`align_face`, :func:`paste_back` and
:func:`paste_back_all` are the same code on the CPU for PIL images and arrays.

- **Alignment** reproduces the PIL operations the e4e encoder saw in training (the pSp/e4e
  variant of the FFHQ recipe), so the encoder gets the input distribution it expects: PIL's
  Lanczos shrink (its fixed-point weights as banded matrices, horizontal then vertical pass,
  8-bit rounding after each), the crop, numpy's reflect pad with the blur and median fade, and
  ``Image.transform(QUAD, BILINEAR)`` as ``grid_sample`` at the output pixel centres, truncated
  to 8 bits as PIL does. Sums and sample positions run in float64 where the device has it
  (not MPS): the Lanczos passes are then bit-identical to Pillow, and whole crops differ from
  the previous PIL code (kept as ``tests/pil_alignment_reference.py``) in a few pixels by 1.
  The sampling follows the formula above (tests: a linear-ramp photo).
- **Paste-back** uses ``torch.nn.functional.grid_sample`` through the analytic inverse: every
  photo pixel q inside the quad samples the generated crop at
  (i, j) = G·B⁻¹·(q − UL) − (0.5, 0.5), B = [UR − UL, LL − UL], so the generated crop may have
  any size G (256 or 1024) without an intermediate resize, the mask is computed per photo pixel
  from the same coordinates, and pixels where the mask is 0 are copied from the input unchanged
  (bit-identical).

The package: ``geometry`` (the transform), ``resample`` (PIL's arithmetic on tensors),
``align``, ``paste`` and ``detection`` (MTCNN).
"""

from .align import align_face, align_faces
from .detection import (MTCNN_MIN_FACE, Detection, Face, FaceDetector, box_iou,
                        still_detected)
from .geometry import AlignTransform, ffhq_quad
from .paste import paste_back, paste_back_all, paste_faces, paste_mask
from .resample import lanczos_resize

__all__ = ["AlignTransform", "Detection", "Face", "FaceDetector", "box_iou", "still_detected",
           "MTCNN_MIN_FACE", "ffhq_quad", "align_faces", "align_face",
           "lanczos_resize", "paste_mask", "paste_faces", "paste_back", "paste_back_all"]
