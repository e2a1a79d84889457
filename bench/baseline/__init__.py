"""The textbook stack the benchmarks compare against: aiohttp + pydantic + arq, all defaults."""
