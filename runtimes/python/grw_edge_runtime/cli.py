"""``grw-edge-runtime info|selftest|predict ARTIFACT``: the device runtime's command line.

User errors print one line and exit with status 1; no traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import grw_edge_runtime
from grw_edge_runtime.errors import GrwEdgeError, InputShapeError


def info(args: argparse.Namespace) -> int:
    """What the artifact is, what it takes and what it carries."""
    manifest = grw_edge_runtime.read_manifest(args.artifact)
    preprocess = manifest.input.get("preprocess", {})
    state_bytes = sum(4 * int(np.prod(state.shape)) for state in manifest.states)
    files = manifest.files or {}
    lines = [
        f"{manifest.backbone} {manifest.target} {manifest.precision} ({manifest.mode}), "
        f"format {manifest.format_version}",
        f"input {manifest.input['name']} {manifest.input['shape']} {manifest.input['dtype']}: "
        f"uint8 frames /255, resize {preprocess.get('resize')}, centre crop "
        f"{preprocess.get('center_crop')}; {manifest.frames_per_clip} frames at "
        f"{manifest.fps:g} fps per clip",
        f"states {len(manifest.states)} tensors, {state_bytes / 2**20:.2f} MiB; embeddings "
        f"{manifest.embed_dim}; classes {manifest.num_classes}",
        f"files {len(files)}, {sum(f['size'] for f in files.values()) / 2**20:.1f} MiB "
        f"recorded with sha256" if files else "files: no size/sha256 record (older export)",
        _describe_selftest(manifest.selftest),
    ]
    print("\n".join(lines))
    return 0


def _describe_selftest(spec: dict | None) -> str:
    if not spec:
        return "self-test: none (older export)"
    frames = spec["frames"]["shape"]
    return (f"self-test {frames[0]} frames of {frames[1]}x{frames[2]}, tolerance "
            f"{spec['tolerance']}")


def selftest(args: argparse.Namespace) -> int:
    """PASS or FAIL in one line; status 1 on FAIL."""
    session = grw_edge_runtime.open(args.artifact, args.backend, threads=args.threads)
    report = session.self_test()
    print(report.line())
    return 0 if report.passed else 1


def predict(args: argparse.Namespace) -> int:
    """Stream the frames of a .npy file (N, H, W, 3) uint8 or a video, print the top classes."""
    session = grw_edge_runtime.open(args.artifact, args.backend, threads=args.threads)
    manifest = session.manifest
    frames = _frames(Path(args.input), manifest.fps, manifest.frames_per_clip)
    step = manifest.frames_per_step if session.streaming else 1
    usable = len(frames) - len(frames) % step
    if not usable:
        raise InputShapeError(f"{args.input} has fewer frames than one step ({step})")
    for start in range(0, usable, step):
        chunk = frames[start:start + step]
        session.push(np.broadcast_to(chunk, (manifest.batch, *chunk.shape)))
    logits = session.classify()[0]
    labels = (session.artifact / manifest.labels).read_text().splitlines()
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    for index in np.argsort(-logits)[:args.top]:
        print(f"{probabilities[index]:.3f}  {labels[index] if index < len(labels) else index}")
    return 0


def _frames(path: Path, fps: float, limit: int) -> np.ndarray:
    """uint8 (N, H, W, 3) frames: a .npy file as it is, or a video sampled at ``fps``."""
    if not path.is_file():
        raise InputShapeError(f"no file at {path}")
    if path.suffix == ".npy":
        frames = np.load(path, allow_pickle=False)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise InputShapeError(f"{path} must hold uint8 frames (N, H, W, 3), got "
                                  f"{frames.dtype} {frames.shape}")
        return frames[:limit]
    try:
        import av
    except ImportError:
        raise InputShapeError("reading videos needs PyAV: pip install "
                              "'grw-edge-runtime[video]', or pass a .npy file") from None
    kept, next_time = [], 0.0
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                if frame.time is None or frame.time + 1e-6 >= next_time:
                    kept.append(frame.to_ndarray(format="rgb24"))
                    next_time += 1 / fps
                if len(kept) == limit:
                    break
    except av.error.FFmpegError as error:
        raise InputShapeError(f"{path} cannot be decoded: {error}") from None
    if not kept:
        raise InputShapeError(f"{path} has no video frames")
    return np.stack(kept)


def main(argv: list[str] | None = None) -> None:
    from grw_edge_runtime.litert import quiet_exit

    quiet_exit()
    parser = argparse.ArgumentParser(prog="grw-edge-runtime", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, function in (("info", info), ("selftest", selftest), ("predict", predict)):
        command = commands.add_parser(name, help=function.__doc__.splitlines()[0])
        command.add_argument("artifact")
        command.set_defaults(run=function)
        if name == "info":
            continue
        command.add_argument("--backend", default=None, help="default: the artifact's target's")
        command.add_argument("--threads", type=int, default=None, help="intra-op threads")
        if name == "predict":
            command.add_argument("input", help=".npy uint8 (N, H, W, 3) frames or a video")
            command.add_argument("--top", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        status = args.run(args)
    except GrwEdgeError as error:
        print(f"grw-edge-runtime: error: {error}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        status = 130
    sys.exit(status)


if __name__ == "__main__":
    main()
