"""A month too large to hold at once, drawn and written slice by slice in bounded memory.

Holding a partner's whole month as one Arrow table (``partner_lines``) and having each cloud
writer build its full native table costs about 4 GB per million lines, so at 10M lines per
source the generator could not run on one machine. Above ``SLICE_ROWS`` lines a partner's
usage is instead drawn in slices, each from its own RNG stream and with its own range of
line ids; each slice gets its noise (other services; credits and refunds sampled from the
slice) and goes through the cloud writer's ``Sink`` as further native files (AWS parts, GCP
shards, Azure parts, Snowflake Cortex files). The slice's usage lines are also spilled to
Parquet. What needs the whole month - the cent-exact top-ups of the tolerance plants, the
tax line, the statements and the ground truth - is computed in DuckDB over those spilled
files (an Arrow dataset), never from one table in memory.

A month at or below the slice size does not come through here: it is drawn exactly as
before, so small months stay byte for byte what they were.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from revshare.db import connect
from revshare.generate import TAX_SQL, cent_exact, fixed_parts, late_lines, noise
from revshare.generate.usage import SPECS, combos, draw_lines, finalize, to_gen_lines
from revshare.periods import Period

#: Lines per partner above which a month is drawn and written in slices of about this size.
#: At 250,000 the peak (the Azure and GCP writers' DuckDB staging) is about 1.9 GB; at 500,000
#: it was 2.25 GB, for the same total time.
SLICE_ROWS = 250_000
#: Overrides ``SLICE_ROWS`` for a process (tests run the CLI with small slices).
SLICE_ROWS_ENV = "REVSHARE_GENERATE_SLICE_ROWS"
#: Line ids of slice k start at (k + 1) x ID_STRIDE, its GCP late rows at +25M, its other
#: services' lines at +50M (a slice holds at most 1M lines). The fixed parts (forced,
#: unmapped, restated, cent-exact) keep their ids of an unsliced month, 1M to 6,999,999.
ID_STRIDE = 100_000_000
# RNG streams: [seed, partner] draws the fixed parts (as in an unsliced month); slice k draws
# from [seed, partner, _DRAW, k] and its noise from [seed, partner, _NOISE, k]. The tags are
# non-zero because SeedSequence pads entropy with zeros: [seed, partner, 0] would be the
# partner's own stream again.
_DRAW, _NOISE = 1, 2

# Tax over a whole sliced month: the same row as the windowed query of an unsliced month
# (the first usage line per account, 5 % of the total), without sorting the month.
_TAX_SPILLED = """(SELECT *, (SELECT sum(cost) FROM u) AS total FROM u
    WHERE line_id IN (SELECT min(line_id) FROM u GROUP BY account_id))"""


class Sink(Protocol):
    """A cloud writer's delivery written in chunks (``aws.Sink``, ``gcp.Sink``, ...)."""

    def add(self, lines: pa.Table, *, temp_dir: Path | None = None) -> None: ...

    def close(self) -> list[Path]: ...


def slice_rows(override: int | None = None) -> int:
    """The slice size: an explicit value, else the environment's, else ``SLICE_ROWS``."""
    value = override if override is not None else int(os.environ.get(SLICE_ROWS_ENV, SLICE_ROWS))
    if not 1_000 <= value <= 1_000_000:
        # Above 1M an unsliced month's usage ids (0..0.85 n) would reach the fixed parts' ids.
        raise ValueError(f"slice size must be 1,000 to 1,000,000 lines, got {value}")
    return value


def sizes(n: int, size: int) -> list[int]:
    """``n`` lines cut into the fewest slices of at most ``size``, as even as possible."""
    k = -(-n // size)
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def write_month(
    partner: str,
    period: Period,
    n: int,
    seed: int,
    sink: Sink,
    spill: Path,
    *,
    size: int,
    restated: bool = False,
) -> ds.Dataset:
    """Write ``partner``'s month of ``n`` lines through ``sink`` slice by slice; return its
    usage lines (kind usage, licensed, with the private truth columns) as a dataset over the
    Parquet files spilled under ``spill``, for the statements and the ground truth."""
    spill.mkdir(parents=True, exist_ok=True)
    temp = spill / "duckdb"
    table = combos(partner)
    fixed = fixed_parts(
        partner, period, n, np.random.default_rng([seed, list(SPECS).index(partner)]), table,
        restated=restated, late=False,
    )  # fmt: skip
    files: list[Path] = []
    for k, usage in enumerate(_slices(partner, period, n, seed, size, table, fixed)):
        rng = np.random.default_rng([seed, list(SPECS).index(partner), _NOISE, k])
        extra = noise(
            partner, period, usage, sizes(n, size)[k], rng,
            start_index=(k + 1) * ID_STRIDE + ID_STRIDE // 2, tax=False,
        )  # fmt: skip
        files.append(_spill(usage, spill / f"usage-{k:05d}.parquet"))
        sink.add(finalize(pa.concat_tables([usage, *extra])), temp_dir=temp)
        del usage, extra
    # The whole month's own lines: the top-ups that make the tolerance plants cent-exact
    # (they count as usage, so they are spilled too), then the tax on all of it.
    last = cent_exact(partner, period, ds.dataset(files), table)
    if last:
        files.append(_spill(pa.concat_tables(last), spill / "usage-cent-exact.parquet"))
    if partner in ("aws", "gcp"):
        con = connect(temp_dir=temp)
        con.register("u", ds.dataset(files))
        last.append(con.sql(TAX_SQL.format(source=_TAX_SPILLED)).to_arrow_table())
        con.close()
    if last:
        schema = pa.schema(ds.dataset(files).schema)
        sink.add(finalize(pa.concat_tables([t.cast(schema) for t in last])), temp_dir=temp)
    return ds.dataset(files)


def _slices(
    partner: str,
    period: Period,
    n: int,
    seed: int,
    size: int,
    table: pa.Table,
    fixed: list[pa.Table],
) -> Iterator[pa.Table]:
    """Each slice's usage: 85 % of its lines drawn from its own RNG stream (so slices do not
    depend on one another), GCP's late rows for the slice, the fixed parts with the first."""
    for k, m in enumerate(sizes(n, size)):
        rng = np.random.default_rng([seed, list(SPECS).index(partner), _DRAW, k])
        base = (k + 1) * ID_STRIDE
        drawn = draw_lines(partner, period, int(m * 0.85), rng, table, start_index=base)
        parts = [to_gen_lines(partner, period, drawn)]
        if partner == "gcp":
            parts.append(late_lines(period, m, rng, table, start_index=base + ID_STRIDE // 4))
        yield pa.concat_tables([*parts, *fixed]) if k == 0 else pa.concat_tables(parts)


def _spill(table: pa.Table, path: Path) -> Path:
    pq.write_table(table, path)
    return path
