"""Reports: the HTML dashboard."""
