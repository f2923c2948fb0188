"""Brain-inspired signals: hormones, genetic triggers, and the aggregated brain state."""
