"""selfimprove."""
