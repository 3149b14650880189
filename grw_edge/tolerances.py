"""DESIGN.md's agreement bars, in one place: tests, exporters and ``verify`` all use these."""

UPSTREAM_LOGITS_MAX_ABS = 1e-4  # grw-edge PyTorch vs the upstream code's outputs
STREAMED_EMBEDDINGS_MAX_ABS = 1e-4  # streamed step vs the whole-clip reference
EXPORTED_LOGITS_MAX_ABS = 1e-3  # exported model vs the reference (float32)
EXPORTED_TOP1_AGREEMENT = 1.0  # float32 exports agree on every clip
FP16_TOP1_AGREEMENT = 0.99
INT8_TOP1_DROP_POINTS = 1.0
