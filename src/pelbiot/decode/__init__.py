"""Decoding: payload forms, timestamps, rejection reasons and the metric catalogue."""
