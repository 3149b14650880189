"""The paper's warm-up set: an airplane rotating about its yaw, pitch or roll axis.

Every video starts from a uniformly random orientation, so a single frame says nothing
about the class; only the motion does.  Rendering is numpy only (orthographic projection,
flat Lambert shading, a z-buffer); videos are written as H.264 mp4 files in the Kinetics
layout ``ROOT/<split>/<class>/<class>_<i>.mp4``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from grw_edge._progress import progress
from grw_edge.data.video import write_video

CLASSES = ("pitch", "roll", "yaw")
# body axes: x = nose (roll), y = right wing (pitch), z = up (yaw)
_AXES = {"roll": 0, "pitch": 1, "yaw": 2}
SPLITS = ("train", "test")


def airplane_mesh() -> np.ndarray:
    """Triangles (F, 3 vertices, xyz) of a low-poly airplane: body, nose, wings, tail."""
    ring = [(np.cos(a) * 0.12, np.sin(a) * 0.12) for a in np.linspace(0, 2 * np.pi, 7)[:-1]]
    tail_x, nose_x, tip_x = -0.9, 0.6, 1.0
    triangles = []
    for i in range(6):  # the fuselage: a hexagonal prism, then a pointed nose
        (y0, z0), (y1, z1) = ring[i], ring[(i + 1) % 6]
        a, b = (tail_x, y0, z0), (tail_x, y1, z1)
        c, d = (nose_x, y1, z1), (nose_x, y0, z0)
        triangles += [(a, b, c), (a, c, d), (d, c, (tip_x, 0.0, 0.0)), (a, b, (tail_x, 0, 0))]
    wing = [(0.25, 0.1, 0.0), (-0.15, 0.1, 0.0), (-0.35, 1.0, 0.05), (-0.15, 1.0, 0.05)]
    stabiliser = [(-0.6, 0.1, 0.05), (-0.85, 0.1, 0.05), (-0.9, 0.38, 0.08), (-0.8, 0.38, 0.08)]
    for quad in (wing, stabiliser):
        for side in (1, -1):
            p = [(x, side * y, z) for x, y, z in quad]
            triangles += [(p[0], p[1], p[2]), (p[0], p[2], p[3])]
    triangles += [((-0.55, 0.0, 0.1), (-0.9, 0.0, 0.1), (-0.92, 0.0, 0.5))]  # the fin
    return np.asarray(triangles, dtype=np.float64)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3D rotation matrix."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def axis_rotation(axis: int, angle: float) -> np.ndarray:
    """Rotation by ``angle`` radians about body axis 0, 1 or 2."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    rotation = np.eye(3)
    rotation[i, i], rotation[i, j], rotation[j, i], rotation[j, j] = c, -s, s, c
    return rotation


def render_rotation(axis: str, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (frames, size, size, 3): the airplane turning about its body ``axis``."""
    if axis not in _AXES:
        raise ValueError(f"unknown axis {axis!r}; choose one of {', '.join(CLASSES)}")
    mesh = airplane_mesh()
    start = random_rotation(rng)
    speed = np.deg2rad(rng.uniform(6, 15)) * rng.choice((-1, 1))
    colour = rng.uniform(0.35, 1.0, 3)
    background = rng.uniform(0.0, 0.3, 3)
    light = rng.standard_normal(3)
    light /= np.linalg.norm(light)
    video = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        pose = start @ axis_rotation(_AXES[axis], speed * t)
        video[t] = _render(mesh @ pose.T, size, colour, background, light)
    return video


def _render(triangles: np.ndarray, size: int, colour: np.ndarray, background: np.ndarray,
            light: np.ndarray) -> np.ndarray:
    """Orthographic z-buffered rendering of world-space triangles into a size x size image."""
    image = np.empty((size, size, 3))
    image[:] = background * np.linspace(0.8, 1.2, size)[:, None, None]
    depth = np.full((size, size), -np.inf)
    scale = size / 2.3
    screen = triangles[..., :2] * scale + size / 2
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    shade = 0.25 + 0.75 * np.abs(normals @ light)
    for (p0, p1, p2), z, brightness in zip(screen, triangles[..., 2], shade):
        low = np.floor(np.minimum(np.minimum(p0, p1), p2)).clip(0, size - 1).astype(int)
        high = np.ceil(np.maximum(np.maximum(p0, p1), p2)).clip(0, size - 1).astype(int)
        xs, ys = np.meshgrid(np.arange(low[0], high[0] + 1) + 0.5,
                             np.arange(low[1], high[1] + 1) + 0.5)
        area = (p1[0] - p0[0]) * (p2[1] - p0[1]) - (p2[0] - p0[0]) * (p1[1] - p0[1])
        if abs(area) < 1e-9:
            continue
        w1 = ((xs - p0[0]) * (p2[1] - p0[1]) - (p2[0] - p0[0]) * (ys - p0[1])) / area
        w2 = ((p1[0] - p0[0]) * (ys - p0[1]) - (xs - p0[0]) * (p1[1] - p0[1])) / area
        w0 = 1 - w1 - w2
        inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
        z_pixels = w0 * z[0] + w1 * z[1] + w2 * z[2]
        rows, cols = ys.astype(int), xs.astype(int)
        visible = inside & (z_pixels > depth[rows, cols])
        depth[rows[visible], cols[visible]] = z_pixels[visible]
        image[rows[visible], cols[visible]] = colour * brightness
    return (image[::-1].clip(0, 1) * 255).astype(np.uint8)  # y up on screen


def make_synthetic_dataset(root: str | os.PathLike[str], *, videos_per_class: int = 8,
                           test_videos_per_class: int | None = None, frames: int = 40,
                           size: int = 96, fps: float = 10.0, seed: int = 0) -> dict:
    """Write the train and test splits; the same seed writes the same videos."""
    if videos_per_class < 1 or frames < 2 or size < 16:
        raise ValueError("need videos_per_class >= 1, frames >= 2 and size >= 16")
    counts = {"train": videos_per_class,
              "test": test_videos_per_class or max(2, videos_per_class // 4)}
    jobs = [(s, c, i) for s, split in enumerate(SPLITS) for c in range(len(CLASSES))
            for i in range(counts[split])]
    for split_index, class_index, number in progress(jobs, desc="synthetic videos",
                                                     unit="video"):
        rng = np.random.default_rng([seed, split_index, class_index, number])
        name = CLASSES[class_index]
        video = render_rotation(name, frames, size, rng)
        write_video(Path(root) / SPLITS[split_index] / name / f"{name}_{number:04d}.mp4",
                    video, fps)
    return {"root": str(root), "classes": list(CLASSES), "splits": counts, "frames": frames,
            "size": size, "fps": fps, "seed": seed}
