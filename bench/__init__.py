"""hillsync benchmarks: `python -m bench` prints them all as one table."""
