"""The revision chain, one file per schema version (``v<N>_...``, revision ``000N``)."""
