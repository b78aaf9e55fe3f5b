"""Streaming Deep Speech 2 speech recognition: features, model, streaming, decoding, training."""
