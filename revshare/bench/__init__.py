"""``revshare bench``: the pipeline against the physical limit and the pandas way.

``runner.bench`` generates a month of N lines per source, then runs, each in a process of its
own: the pipeline (the real flow, through the CLI), the limit (``limit``: one DuckDB pass from
the native files to the grain) and the pandas way (``pandas_way``). ``compare`` checks that
both references reach the pipeline's figures; ``report`` writes ``bench.json`` and
``bench.md``. Nothing here imports Prefect.
"""
