"""The evaluation transform in numpy: uint8 -> /255 -> bilinear antialiased resize to
(S, S) -> centre crop to R, equal to torchvision's ``resize(..., antialias=True)`` and
``center_crop`` (the training and evaluation transform) to float32 rounding.

The resize is separable: each output row (column) is a weighted sum of a few input rows
(columns), with the triangle filter widened by the downscaling factor (PIL's and PyTorch's
antialiasing).  Only the rows and columns the crop keeps are computed, the 1/255 scale is
folded into the weights, and the taps are precomputed once per input size.
"""
from __future__ import annotations

import functools

import numpy as np

from grw_edge_runtime.errors import InputShapeError


@functools.lru_cache(maxsize=16)
def axis_taps(size: int, resized: int, crop: int, scale: float = 1.0
              ) -> tuple[np.ndarray, np.ndarray]:
    """Input indices (R, K) and weights (R, K) of the ``crop`` centre outputs of resizing an
    axis of ``size`` samples to ``resized``.

    The filter positions are computed in float32 as PyTorch's ``_upsample_bilinear2d_aa``
    computes them (its rounding of the centres reaches 1e-5 on upscaling), so the result
    matches torchvision rather than the exact transform.
    """
    f32 = np.float32
    ratio = f32(size) / f32(resized)
    support = ratio if ratio >= 1 else f32(1.0)  # the triangle's half-width, in input samples
    inverse = np.float64(f32(1) / ratio if ratio >= 1 else 1.0)
    start = int(round((resized - crop) / 2.0))  # torchvision's centre crop offset
    centres = (np.float64(ratio) * (np.arange(start, start + crop) + 0.5)).astype(f32)
    low = np.maximum((centres - support + 0.5).astype(np.int64), 0)
    high = np.minimum((centres + support + 0.5).astype(np.int64), size)
    width = int((high - low).max())
    index = low[:, None] + np.arange(width)[None]
    offsets = (index.astype(f32) - centres[:, None]).astype(np.float64)
    weights = np.clip(1 - np.abs((offsets + 0.5) * inverse), 0, None).astype(f32)
    weights[index >= high[:, None]] = 0
    weights /= weights.sum(axis=1, keepdims=True, dtype=f32)
    return np.minimum(index, size - 1), (weights * f32(scale)).astype(f32)


def _resample(array: np.ndarray, axis: int, index: np.ndarray, weights: np.ndarray
              ) -> np.ndarray:
    """Weighted sum of the taps along ``axis`` (float32 result)."""
    shape = [1] * array.ndim
    shape[axis] = index.shape[0]
    out = None
    for k in range(index.shape[1]):
        term = np.take(array, index[:, k], axis=axis) * weights[:, k].reshape(shape)
        out = term if out is None else np.add(out, term, out=out)
    return out


def preprocess(frames: np.ndarray, *, resize: int, crop: int) -> np.ndarray:
    """uint8 frames (..., H, W, 3) -> float32 (..., 3, crop, crop) in [0, 1]."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise InputShapeError(f"raw frames must be uint8 (..., H, W, 3), got "
                              f"{frames.dtype} {frames.shape}")
    if crop > resize:
        raise InputShapeError(f"the crop {crop} is larger than the resize {resize}")
    height, width = frames.shape[-3:-1]
    if min(height, width) == 0:
        raise InputShapeError(f"empty frame of shape {frames.shape}")
    rows = axis_taps(height, resize, crop, 1 / 255)
    columns = axis_taps(width, resize, crop)
    rows_first = crop * width * rows[0].shape[1] + crop * crop * columns[0].shape[1]
    columns_first = height * crop * columns[0].shape[1] + crop * crop * rows[0].shape[1]
    if rows_first <= columns_first:  # the order that multiplies fewer samples
        out = _resample(_resample(frames, -3, *rows), -2, *columns)
    else:
        out = _resample(_resample(frames, -2, *columns), -3, *rows)
    return np.ascontiguousarray(np.moveaxis(out, -1, -3))
