"""Export targets: a target name -> the exporter module that writes its artifacts.

Torch-free, so that the command line lists the targets without importing an exporter;
adding a target is one exporter module (``grw_edge.exporters``), one runtime backend and a
line here.
"""

TARGETS = {
    "onnx": "grw_edge.exporters.onnx",
    "tensorrt": "grw_edge.exporters.tensorrt",
    "litert": "grw_edge.exporters.litert",
    "coreml": "grw_edge.exporters.coreml",
}
