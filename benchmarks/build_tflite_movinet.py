"""Build the official TensorFlow MoViNet-A0/A1/A2-Stream as TF Lite files (random weights),
the peer of ``grw-edge bench --compare-tflite``.

Runs in a TensorFlow environment of its own, never the project's (TensorFlow pins its own
numpy/protobuf):

    python3 -m venv /work/venv-tf
    /work/venv-tf/bin/pip install tf-models-official ai-edge-litert
    /work/venv-tf/bin/python benchmarks/build_tflite_movinet.py --out /tmp/tflite a0 a1 a2

It follows the official stream export (official/projects/movinet/tools/export_saved_model.py,
"Export for TF Lite"): causal (2+1)D convolutions, 2plus3d SE, hard-swish, hard-sigmoid gates,
one frame per call at the model's resolution, states as inputs and outputs, then the TF Lite
converter on the saved model's default signature.  Weights stay at their random
initialisation: the cost of a step does not depend on them.

``tiny`` writes the test fixture ``tests/data/tiny_stream.tflite`` (a few hundred bytes with
the same interface: an image and a state in, logits and the next state out).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

RESOLUTION = {"a0": 172, "a1": 172, "a2": 224}


def build(model_id: str, out: Path) -> Path:
    """Export one stream model to a saved model, then convert it; returns the .tflite path."""
    import tensorflow as tf
    from official.projects.movinet.tools.export_saved_model import build_and_export_saved_model

    side = RESOLUTION[model_id]
    with tempfile.TemporaryDirectory() as saved:
        build_and_export_saved_model(
            export_path=saved, model_id=model_id, causal=True, conv_type="2plus1d",
            se_type="2plus3d", activation="hard_swish", gating_activation="hard_sigmoid",
            use_positional_encoding=False, num_classes=600, input_shape=(1, 1, side, side, 3),
            bundle_input_init_states_fn=False, checkpoint_path="")
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        flatbuffer = converter.convert()
    path = out / f"movinet_{model_id}_stream.tflite"
    path.write_bytes(flatbuffer)
    return path


def build_tiny(out: Path) -> Path:
    """A minimal streaming model: state' = state + mean(image), logits = state'."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 1, 8, 8, 3], tf.float32, name="image"),
                                  tf.TensorSpec([1, 3], tf.float32, name="state")])
    def step(image, state):
        running = state + tf.reduce_mean(image, axis=(1, 2, 3))
        return {"logits": 2.0 * running, "state": running}

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [step.get_concrete_function()], tf.Module())
    path = out / "tiny_stream.tflite"
    path.write_bytes(converter.convert())
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", choices=[*sorted(RESOLUTION), "tiny"])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for model_id in args.models:
        print(build_tiny(args.out) if model_id == "tiny" else build(model_id, args.out))


if __name__ == "__main__":
    main()
