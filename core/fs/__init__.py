"""The local disk: regular-file checks, scratch files, hashing with its cache. Imports nothing of core/ but
its errors."""
