"""Video: frame sources, trackers, outputs and the track pipeline."""
