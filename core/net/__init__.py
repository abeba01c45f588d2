"""Talking to other services: request deadlines, retry with backoff, downloads by URL. Imports nothing of
core/ but its errors."""
