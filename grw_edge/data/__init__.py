"""Data: video decoding (PyAV), the Kinetics folder dataset and the synthetic rotation set."""
