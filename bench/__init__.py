"""Benchmarks: the product against a textbook aiohttp + arq stack, on the same box (`python -m bench`)."""
