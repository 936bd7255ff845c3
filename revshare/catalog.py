"""Model catalog mapping, as data and SQL.

Rules (regexes from ``catalog.yaml``) are registered as small Arrow tables and matched against
the *distinct* native SKU keys only, then joined back: a month has millions of lines but a few
hundred keys, so matching stays cheap and no Python touches a billing line.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from revshare.config import PartnerCatalog
from revshare.schema import QUANTITY_SQL

#: x_CatalogStatus values.
MAPPED, UNMAPPED, OUT_OF_SCOPE = "mapped", "unmapped", "out_of_scope"


def register_rules(con: duckdb.DuckDBPyConnection, catalog: PartnerCatalog) -> None:
    """Expose the partner's rules to SQL as ``_model_rules`` and ``_unit_rules``."""
    con.register(
        "_model_rules",
        pa.table(
            {
                "prio": list(range(len(catalog.models))),
                "pattern": [r.match for r in catalog.models],
                "model": [r.model for r in catalog.models],
            }
        ),
    )
    con.register(
        "_unit_rules",
        pa.table(
            {
                "prio": list(range(len(catalog.units))),
                "pattern": [r.match for r in catalog.units],
                "unit": [r.unit for r in catalog.units],
                "tokens_per_unit": [
                    r.tokens_per_unit or catalog.tokens_per_unit for r in catalog.units
                ],
            }
        ),
    )


def map_keys(con: duckdb.DuckDBPyConnection, source_sql: str, catalog: PartnerCatalog) -> None:
    """Match the distinct SKU keys of a connector's canonical SELECT against the rules, once,
    into the temporary table ``_sku_map``. Call ``register_rules`` first.

    A query of its own rather than a CTE of ``mapped_sql``: a CTE read twice (for the keys,
    then for the lines) is materialized whole, every column of every line in memory, while
    this reads only the key column and lets ``mapped_sql`` stream the lines past a small
    hash table."""
    scope = catalog.scope.replace("'", "''")
    con.execute(f"""
CREATE OR REPLACE TEMP TABLE _sku_map AS
WITH keys AS (SELECT DISTINCT x_SkuKey AS k FROM ({source_sql})),
mm AS (
  SELECT k, arg_min(model, prio) AS model FROM keys
  JOIN _model_rules ON regexp_matches(k, pattern) GROUP BY k),
um AS (
  SELECT k, arg_min(unit, prio) AS unit, arg_min(tokens_per_unit, prio) AS tpu FROM keys
  JOIN _unit_rules ON regexp_matches(k, pattern) GROUP BY k)
SELECT keys.k, regexp_matches(keys.k, '{scope}') AS in_scope, mm.model, um.unit, um.tpu
FROM keys LEFT JOIN mm USING (k) LEFT JOIN um USING (k)""")


def mapped_sql(source_sql: str) -> str:
    """Wrap a connector's canonical SELECT so x_ModelId, x_Unit, x_Tokens and
    x_CatalogStatus come from the catalog. Call ``map_keys`` on the connection first."""
    return f"""
SELECT src.* REPLACE (
    CASE WHEN km.in_scope AND km.unit IS NOT NULL THEN km.model END AS x_ModelId,
    CASE WHEN km.in_scope AND km.model IS NOT NULL THEN km.unit END AS x_Unit,
    CASE WHEN km.in_scope AND km.model IS NOT NULL AND km.unit IS NOT NULL
         THEN CAST(src.ConsumedQuantity * km.tpu AS {QUANTITY_SQL}) END AS x_Tokens,
    CASE WHEN NOT km.in_scope THEN '{OUT_OF_SCOPE}'
         WHEN km.model IS NULL OR km.unit IS NULL THEN '{UNMAPPED}'
         ELSE '{MAPPED}' END AS x_CatalogStatus)
FROM ({source_sql}) src LEFT JOIN _sku_map km ON src.x_SkuKey = km.k
"""
