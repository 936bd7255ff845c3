"""What changed: between statement revisions, and between billing snapshots (restatements).

Both are plain SQL diffs keyed by what identifies a line: (model, region, unit, currency) for
statement lines, the source's own line id for billing lines.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from revshare import lines as line_files
from revshare.discrepancies import Kind
from revshare.schema import MONEY_SQL, QUANTITY_SQL

REVISION_DIFF_SQL = f"""
WITH latest AS (SELECT StatementId, max(Revision) AS rev FROM statements GROUP BY 1),
prior AS (
  SELECT s.StatementId, max(s.Revision) AS rev FROM statements s JOIN latest l
    ON s.StatementId = l.StatementId AND s.Revision < l.rev GROUP BY 1),
lines AS (
  SELECT s.StatementId, s.Revision, s.x_ModelId AS model_id, s.RegionId AS region,
    s.x_Unit AS unit, s.Currency AS currency,
    CAST(sum(s.x_Tokens) AS {QUANTITY_SQL}) AS tokens,
    CAST(sum(s.GrossRevenue) AS {MONEY_SQL}) AS revenue,
    CAST(sum(s.ShareAmount) AS {MONEY_SQL}) AS share
  FROM statements s GROUP BY ALL),
old AS (SELECT lines.* FROM lines JOIN prior USING (StatementId) WHERE Revision = prior.rev),
new AS (SELECT lines.* FROM lines JOIN latest USING (StatementId)
        WHERE Revision = latest.rev AND StatementId IN (SELECT StatementId FROM prior))
SELECT coalesce(n.StatementId, o.StatementId) AS statement_id,
  o.Revision AS from_revision,
  (SELECT rev FROM latest WHERE latest.StatementId = coalesce(n.StatementId, o.StatementId))
    AS to_revision,
  coalesce(n.model_id, o.model_id) AS model_id, coalesce(n.region, o.region) AS region,
  coalesce(n.unit, o.unit) AS unit, coalesce(n.currency, o.currency) AS currency,
  CASE WHEN o.model_id IS NULL THEN 'added' WHEN n.model_id IS NULL THEN 'removed'
       ELSE 'changed' END AS change,
  o.tokens AS old_tokens, n.tokens AS new_tokens, o.revenue AS old_revenue,
  n.revenue AS new_revenue, o.share AS old_share, n.share AS new_share,
  CAST(coalesce(n.share, 0) - coalesce(o.share, 0) AS {MONEY_SQL}) AS share_change
FROM new n FULL JOIN old o
  ON n.StatementId = o.StatementId AND n.model_id = o.model_id AND n.unit = o.unit
 AND n.currency = o.currency AND n.region IS NOT DISTINCT FROM o.region
WHERE o.model_id IS NULL OR n.model_id IS NULL OR o.tokens <> n.tokens
   OR o.revenue <> n.revenue OR o.share <> n.share
ORDER BY statement_id, model_id, unit, region, currency
"""

RESTATEMENT_DIFF_SQL = f"""
WITH flagged AS (SELECT discrepancy_id, model_id, unit FROM _grain
                 WHERE type = '{Kind.RESTATEMENT}'),
old AS (SELECT b.* FROM prev_billing b JOIN flagged f
        ON b.x_ModelId = f.model_id AND b.x_Unit = f.unit
        WHERE b.ChargeCategory IN (SELECT category FROM _categories)),
new AS (SELECT b.* FROM billing b JOIN flagged f
        ON b.x_ModelId = f.model_id AND b.x_Unit = f.unit
        WHERE b.ChargeCategory IN (SELECT category FROM _categories))
SELECT f.discrepancy_id,
  CASE WHEN o.x_NativeLineId IS NULL THEN 'added' WHEN n.x_NativeLineId IS NULL THEN 'removed'
       ELSE 'changed' END AS change,
  coalesce(n.x_NativeLineId, o.x_NativeLineId) AS line_id,
  coalesce(n.x_SkuKey, o.x_SkuKey) AS sku,
  coalesce(n.ChargeCategory, o.ChargeCategory) AS charge_category,
  CAST(coalesce(n.ChargePeriodStart, o.ChargePeriodStart) AS DATE) AS usage_date,
  o.x_Tokens AS old_tokens, n.x_Tokens AS new_tokens,
  o.BilledCost AS old_cost, n.BilledCost AS new_cost,
  coalesce(n.BillingCurrency, o.BillingCurrency) AS currency,
  o.x_SnapshotId AS old_snapshot, n.x_SnapshotId AS new_snapshot,
  n.x_SourceFile AS new_file, n.x_SourceRow AS new_row
FROM new n FULL JOIN old o ON n.x_NativeLineId = o.x_NativeLineId
JOIN flagged f ON f.model_id = coalesce(n.x_ModelId, o.x_ModelId)
              AND f.unit = coalesce(n.x_Unit, o.x_Unit)
WHERE o.x_NativeLineId IS NULL OR n.x_NativeLineId IS NULL
   OR o.BilledCost <> n.BilledCost OR o.x_Tokens IS DISTINCT FROM n.x_Tokens
ORDER BY f.discrepancy_id, change, line_id
"""


def revision_diff(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Lines that differ between the latest statement revision and the one before it."""
    return con.execute(REVISION_DIFF_SQL).to_arrow_table()


def restatement_diff(con: duckdb.DuckDBPyConnection, out: Path) -> Path:
    """Counted billing lines added, removed or changed behind each restatement (needs
    ``_grain`` and ``_categories``), into ``out``: a restated month can change every line."""
    return line_files.copy(con, RESTATEMENT_DIFF_SQL, out)
