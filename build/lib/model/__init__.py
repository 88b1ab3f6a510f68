"""CSCAN: cross-domain spatial co-attention hashing for sketch-based image retrieval.

This package knows nothing of HTTP or databases: it holds the network, its losses, the
preprocessing shared by training and serving, edge detectors and checkpoints.
"""
