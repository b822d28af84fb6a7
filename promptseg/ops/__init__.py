"""Pure functions on boxes and masks: no models, no I/O."""
