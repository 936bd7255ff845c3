"""The statement-only checks' queries, as SQL text (see ``revshare.statement_only``).

They read the view ``statements`` (one partner's canonical statement lines), ``probe`` (the
licensor's own usage through the partner, in the canonical billing schema; empty when none is
configured), and the small tables registered first: ``_fx_stmt``, ``_fx_probe``, ``_terms``,
``_k``. Only multiplications and sums: DuckDB divides DECIMALs in floating point, so the few
ratios the history checks need are taken in Python on the aggregated rows.
"""

from __future__ import annotations

from revshare.catalog import MAPPED
from revshare.discrepancies import MATCHED, Kind
from revshare.schema import MONEY_SQL, QUANTITY_SQL

#: The latest revision of each statement, each line converted to the contract currency.
_LINES = f"""
latest AS (
  SELECT * FROM statements
  QUALIFY Revision = max(Revision) OVER (PARTITION BY StatementId)),
l AS (
  SELECT s.*, f.rate AS fx,
    -- quantity x unit price, where the partner gave a price; its own revenue otherwise
    CAST(coalesce(s.x_Quantity * s.x_UnitPrice, s.GrossRevenue) AS {MONEY_SQL}) AS priced
  FROM latest s JOIN _fx_stmt f ON f.currency = s.Currency)"""

#: Revenue the tiers see: the statement's own revenue, recomputed from price where given.
REVENUE_SQL = f"WITH {_LINES} SELECT coalesce(sum(priced * fx), 0) FROM l"

#: One row per (model, unit): the partner's share held to the contract's rate on its own
#: revenue, and that revenue held to quantity x price.
GRAIN_SQL = f"""
WITH {_LINES},
g AS (
  SELECT x_ModelId AS model_id, x_Unit AS unit,
    CAST(sum(x_Tokens) AS {QUANTITY_SQL}) AS reported_tokens,
    CAST(sum(GrossRevenue * fx) AS {MONEY_SQL}) AS reported_revenue,
    CAST(sum(priced * fx) AS {MONEY_SQL}) AS computed_revenue,
    CAST(sum(ShareAmount * fx) AS {MONEY_SQL}) AS reported_share,
    count(*) FILTER (WHERE x_UnitPrice IS NOT NULL) AS priced_lines,
    count(*) AS statement_lines, min(Currency) AS statement_currency,
    min(x_SnapshotId) AS statement_snapshot, min(StatementId) AS statement_id,
    max(Revision) AS revision
  FROM l GROUP BY ALL),
e AS (
  SELECT g.*, t.share_rate, _k.ccy AS currency, _k.tol_abs, _k.tol_rel,
    CAST(computed_revenue * t.share_rate AS {MONEY_SQL}) AS expected_share
  FROM g LEFT JOIN _terms t ON t.model = g.model_id, _k)
SELECT e.* EXCLUDE (tol_abs, tol_rel),
  CAST(reported_share - expected_share AS {MONEY_SQL}) AS amount,
  CASE
    WHEN abs(reported_share - expected_share)
         <= greatest(tol_abs, tol_rel * abs(expected_share)) THEN '{MATCHED}'
    WHEN abs(reported_revenue - computed_revenue)
         > greatest(tol_abs, tol_rel * abs(computed_revenue)) THEN '{Kind.REVENUE_ARITHMETIC}'
    ELSE '{Kind.SHARE_MISCALCULATED}'
  END AS type
FROM e"""

#: Per statement that states a total: the lines must add up to it. The amount is what the
#: total pays beyond (or short of) the lines, so a partner's amounts still add up to
#: what it pays - what the contract says it owes.
TOTAL_SQL = f"""
WITH {_LINES},
t AS (
  SELECT StatementId AS statement_id, max(Revision) AS revision,
    min(x_SnapshotId) AS statement_snapshot, min(Currency) AS statement_currency,
    CAST(max(x_StatementTotalShare * fx) AS {MONEY_SQL}) AS stated_total,
    count(DISTINCT x_StatementTotalShare) AS totals_given,
    CAST(sum(ShareAmount * fx) AS {MONEY_SQL}) AS lines_total, count(*) AS statement_lines
  FROM l GROUP BY StatementId HAVING max(x_StatementTotalShare) IS NOT NULL)
SELECT NULL::VARCHAR AS model_id, NULL::VARCHAR AS unit, t.*, _k.ccy AS currency,
  CAST(stated_total - lines_total AS {MONEY_SQL}) AS amount,
  CASE WHEN abs(stated_total - lines_total) > _k.tol_abs OR totals_given > 1
       THEN '{Kind.TOTAL_MISMATCH}' ELSE '{MATCHED}' END AS type
FROM t, _k"""

#: The licensor's own usage through the partner, per (model, unit), in the contract currency.
PROBE_SQL = f"""
SELECT x_ModelId AS model_id, x_Unit AS unit,
  CAST(sum(x_Tokens) AS {QUANTITY_SQL}) AS probe_tokens,
  CAST(sum(BilledCost * f.rate) AS {MONEY_SQL}) AS probe_revenue,
  count(*) AS probe_lines, min(x_SnapshotId) AS probe_snapshot
FROM probe p JOIN _fx_probe f ON f.currency = p.BillingCurrency
WHERE x_CatalogStatus = '{MAPPED}' AND ChargeCategory = 'Usage'
GROUP BY ALL ORDER BY ALL"""

#: The source lines behind each flagged row: statement lines of its model and unit (all the
#: statement's lines for a partner-level row), and the probe lines behind missing probe usage.
LINES_SQL = f"""
WITH flagged AS (SELECT * FROM _grain WHERE type <> '{MATCHED}'),
latest AS (
  SELECT * FROM statements
  QUALIFY Revision = max(Revision) OVER (PARTITION BY StatementId))
SELECT f.discrepancy_id, 'statement' AS side, s.x_SnapshotId AS snapshot_id,
  s.x_SourceFile AS source_file, s.x_SourceRow AS source_row,
  s.StatementId || ' r' || s.Revision AS line_id, NULL::VARCHAR AS sku, s.RegionId AS region,
  NULL::VARCHAR AS charge_category, NULL::DATE AS usage_date, s.x_Tokens AS tokens,
  s.ShareAmount AS amount, s.Currency AS currency
FROM flagged f JOIN latest s
  ON (f.model_id IS NULL OR (s.x_ModelId = f.model_id
      AND (f.unit IS NULL OR s.x_Unit = f.unit)))
UNION ALL
SELECT f.discrepancy_id, 'probe', p.x_SnapshotId, p.x_SourceFile, p.x_SourceRow,
  p.x_NativeLineId, p.x_SkuKey, p.RegionId, p.ChargeCategory,
  CAST(p.ChargePeriodStart AS DATE), p.x_Tokens, p.BilledCost, p.BillingCurrency
FROM flagged f JOIN probe p ON p.x_ModelId = f.model_id AND p.x_Unit = f.unit
WHERE f.type = '{Kind.PROBE_USAGE_MISSING}' AND p.x_CatalogStatus = '{MAPPED}'
  AND p.ChargeCategory = 'Usage'
"""
