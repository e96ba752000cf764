"""hillsync: classify runs as uphill, downhill or flat and watch the hill balance."""

__version__ = "0.1.0"
