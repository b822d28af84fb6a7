"""Tiny randomly initialised transformers checkpoints, built from small configs and saved with
``save_pretrained``, so tests and benchmarks load them through the same code path real weights take."""
