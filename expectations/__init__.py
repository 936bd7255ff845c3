"""Expectation suites (JSON, reviewed like code) and the Great Expectations adapter.

Import ``expectations.adapter`` only where validation runs: it pulls in GX lazily, which costs
seconds. The suites themselves are plain JSON and can be read without GX.
"""
