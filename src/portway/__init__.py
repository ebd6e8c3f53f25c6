"""Portway: run Amazon API Gateway definitions anywhere, in Python."""
