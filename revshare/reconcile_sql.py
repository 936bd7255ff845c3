"""The reconciliation queries, as SQL text (see ``revshare.reconcile`` for the rules).

They read the views ``billing``, ``statements``, ``prev_billing`` and the small tables the
reconciliation registers first: ``_fx``, ``_fx_stmt``, ``_terms``, ``_categories``, ``_k``.
"""

from __future__ import annotations

from revshare.catalog import MAPPED, UNMAPPED
from revshare.discrepancies import MATCHED, Kind
from revshare.schema import MONEY_SQL, QUANTITY_SQL, RATE_SQL

#: Billing lines meet their FX rate by currency, and by usage day under a daily policy.
FX_JOIN = (
    "f.currency = b.BillingCurrency "
    "AND (f.day IS NULL OR f.day = CAST(b.ChargePeriodStart AS DATE))"
)

#: Days at the end of a period that the period-shift check looks at.
SHIFT_DAYS = (1, 2, 3)


def _billing_grain(source: str, region: str) -> str:
    """Counted billing lines of ``source`` summed to the grain, in reporting currency."""
    return f"""
    SELECT x_ModelId AS model_id, x_Unit AS unit, {region} AS region,
      CAST(sum(x_Tokens) AS {QUANTITY_SQL}) AS tokens,
      CAST(sum(BilledCost * f.rate) AS {MONEY_SQL}) AS revenue,
      CAST(sum(CASE WHEN BillingCurrency <> (SELECT ccy FROM _k) THEN BilledCost END)
           AS {MONEY_SQL}) AS foreign_native,
      CAST(sum(CASE WHEN BillingCurrency = (SELECT ccy FROM _k) THEN BilledCost END)
           AS {MONEY_SQL}) AS domestic,
      CAST(sum(CASE WHEN BillingCurrency <> (SELECT ccy FROM _k) THEN BilledCost * f.rate END)
           AS {MONEY_SQL}) AS foreign_rep,
      min(CASE WHEN BillingCurrency <> (SELECT ccy FROM _k) THEN BillingCurrency END) AS fccy,
      count(DISTINCT CASE WHEN BillingCurrency <> (SELECT ccy FROM _k)
                          THEN BillingCurrency END) AS n_fccy,
      count(*) AS n_lines, min(x_SnapshotId) AS snapshot
    FROM {source} b JOIN _fx f ON {FX_JOIN}
    WHERE x_CatalogStatus = '{MAPPED}' AND ChargeCategory IN (SELECT category FROM _categories)
    GROUP BY ALL"""


def grain_sql(by_region: bool) -> str:
    """The grain query. Matching keys are data (``config/matching.yaml``): (model, unit), or
    (model, unit, region) to hold each statement line to the billing of its own region."""
    region = "RegionId" if by_region else "NULL::VARCHAR"
    on = (
        "{l}.model_id = {r}.model_id AND {l}.unit = {r}.unit "
        "AND {l}.region IS NOT DISTINCT FROM {r}.region"
    )
    return f"""
WITH b AS ({_billing_grain("billing", region)}),
p AS ({_billing_grain("prev_billing", region)}),
latest AS (
  SELECT * FROM statements
  QUALIFY Revision = max(Revision) OVER (PARTITION BY StatementId)),
sl AS (
  SELECT *, count(*) OVER (PARTITION BY x_ModelId, RegionId, x_Unit, Currency, x_Tokens,
                                        GrossRevenue, ShareAmount) AS copies,
    row_number() OVER (PARTITION BY x_ModelId, RegionId, x_Unit, Currency, x_Tokens,
                       GrossRevenue, ShareAmount ORDER BY x_SourceFile, x_SourceRow) AS copy_no
  FROM latest),
s AS (
  SELECT x_ModelId AS model_id, x_Unit AS unit, {region} AS region,
    CAST(sum(x_Tokens) AS {QUANTITY_SQL}) AS tokens,
    CAST(sum(GrossRevenue * f.rate) AS {MONEY_SQL}) AS revenue,
    CAST(sum(ShareAmount * f.rate) AS {MONEY_SQL}) AS share,
    CAST(coalesce(sum(CASE WHEN copy_no > 1 THEN ShareAmount * f.rate END), 0)
         AS {MONEY_SQL}) AS dup_share,
    count(*) FILTER (WHERE copy_no > 1) AS dup_lines,
    min(sl.Currency) AS currency, count(*) AS n_lines, min(x_SnapshotId) AS snapshot,
    min(StatementId) AS statement_id, max(Revision) AS revision
  FROM sl JOIN _fx_stmt f ON f.currency = sl.Currency GROUP BY ALL),
days AS (
  SELECT x_ModelId AS model_id, x_Unit AS unit, {region} AS region,
    datediff('day', CAST(ChargePeriodStart AS DATE),
             CAST(BillingPeriodEnd AS DATE)) AS days_before_end,
    sum(x_Tokens) AS tokens, sum(BilledCost * f.rate) AS revenue
  FROM billing b JOIN _fx f ON {FX_JOIN}
  WHERE x_CatalogStatus = '{MAPPED}' AND ChargeCategory IN (SELECT category FROM _categories)
  GROUP BY ALL),
tails AS (
  SELECT model_id, unit, region, k,
    sum(tokens) FILTER (WHERE days_before_end <= k) AS tokens,
    sum(revenue) FILTER (WHERE days_before_end <= k) AS revenue
  FROM days, (SELECT unnest({list(SHIFT_DAYS)}) AS k) GROUP BY ALL),
j AS (
  SELECT coalesce(b.model_id, s.model_id) AS model_id, coalesce(b.unit, s.unit) AS unit,
    coalesce(b.region, s.region) AS region, b.tokens AS billed_tokens, b.revenue AS billed_revenue,
    t.share_rate,
    CAST(coalesce(b.revenue, 0) * t.share_rate AS {MONEY_SQL}) AS expected_share,
    s.tokens AS reported_tokens, s.revenue AS reported_revenue, s.share AS reported_share,
    s.dup_share, s.dup_lines AS duplicate_lines, s.currency AS statement_currency,
    b.foreign_native, b.domestic, b.fccy AS foreign_currency, b.n_fccy,
    -- the rate booked: the month-end rate, or the volume-weighted daily rates (display only)
    CAST(b.foreign_rep / nullif(b.foreign_native, 0) AS {RATE_SQL}) AS fx_rate,
    b.n_lines AS billing_lines, s.n_lines AS statement_lines,
    b.snapshot AS billing_snapshot, s.snapshot AS statement_snapshot,
    s.statement_id, s.revision,
    p.tokens AS previous_tokens, p.revenue AS previous_revenue, p.snapshot AS previous_snapshot
  FROM b FULL JOIN s ON {on.format(l="b", r="s")}
  LEFT JOIN _terms t ON t.model = coalesce(b.model_id, s.model_id)
  LEFT JOIN p ON p.model_id = coalesce(b.model_id, s.model_id)
             AND p.unit = coalesce(b.unit, s.unit)
             AND p.region IS NOT DISTINCT FROM coalesce(b.region, s.region)),
d AS (
  SELECT j.*, _k.tol_abs, _k.tol_rel, _k.ccy AS currency,
    CAST(coalesce(reported_share, 0) - expected_share AS {MONEY_SQL}) AS amount,
    CAST(coalesce(reported_tokens, 0) - coalesce(billed_tokens, 0) AS {QUANTITY_SQL})
      AS diff_tokens,
    CAST(coalesce(reported_revenue, 0) - coalesce(billed_revenue, 0) AS {MONEY_SQL})
      AS diff_revenue
  FROM j, _k),
shift AS (
  SELECT d.model_id, d.unit, d.region, min(tails.k) AS shift_days,
    arg_min(tails.tokens, tails.k) AS shift_tokens
  FROM d JOIN tails ON {on.format(l="d", r="tails")}
  WHERE d.reported_tokens IS NOT NULL AND d.billed_tokens IS NOT NULL
    AND abs(d.billed_tokens - tails.tokens - d.reported_tokens) <= d.tol_rel * d.billed_tokens
    AND abs(d.billed_revenue - tails.revenue - d.reported_revenue)
        <= greatest(d.tol_abs, d.tol_rel * abs(d.billed_revenue))
  GROUP BY ALL)
SELECT d.*, shift.shift_days, shift.shift_tokens,
  CASE WHEN n_fccy = 1 AND foreign_native <> 0
       THEN CAST((reported_revenue - coalesce(domestic, 0)) / foreign_native AS {RATE_SQL})
  END AS implied_fx,
  CASE
    WHEN abs(amount) <= greatest(tol_abs, tol_rel * abs(expected_share))
         AND abs(diff_tokens) <= tol_rel * abs(coalesce(billed_tokens, 0))
         AND coalesce(statement_currency, currency) = currency THEN '{MATCHED}'
    WHEN reported_tokens IS NULL THEN '{Kind.MISSING_FROM_STATEMENT}'
    WHEN billed_tokens IS NULL THEN '{Kind.MISSING_FROM_BILLING}'
    WHEN duplicate_lines > 0 AND abs(amount - dup_share)
         <= greatest(tol_abs, tol_rel * abs(expected_share)) THEN '{Kind.DUPLICATE_LINES}'
    WHEN previous_snapshot IS NOT NULL AND previous_snapshot <> billing_snapshot
         AND abs(reported_tokens - previous_tokens) <= tol_rel * abs(previous_tokens)
         AND abs(reported_revenue - previous_revenue)
             <= greatest(tol_abs, tol_rel * abs(previous_revenue)) THEN '{Kind.RESTATEMENT}'
    WHEN abs(diff_tokens) > tol_rel * abs(billed_tokens) THEN
      CASE WHEN shift.shift_days IS NOT NULL THEN '{Kind.PERIOD_SHIFT}'
           ELSE '{Kind.QUANTITY_MISMATCH}' END
    WHEN statement_currency <> currency THEN '{Kind.CURRENCY_FX_MISMATCH}'
    WHEN abs(diff_revenue) > greatest(tol_abs, tol_rel * abs(billed_revenue)) THEN
      CASE WHEN foreign_native <> 0 THEN '{Kind.CURRENCY_FX_MISMATCH}'
           ELSE '{Kind.PRICE_REVENUE_MISMATCH}' END
    ELSE '{Kind.SHARE_MISCALCULATED}'
  END AS type
FROM d LEFT JOIN shift ON {on.format(l="d", r="shift")}
"""


UNMAPPED_SQL = f"""
SELECT NULL::VARCHAR AS model_id, NULL::VARCHAR AS unit, x_SkuKey AS sku,
  CAST(sum(BilledCost * f.rate) AS {MONEY_SQL}) AS billed_revenue,
  CAST(-CAST(sum(BilledCost * f.rate) AS {MONEY_SQL}) * (SELECT base_rate FROM _k)
       AS {MONEY_SQL}) AS amount,
  CAST(CAST(sum(BilledCost * f.rate) AS {MONEY_SQL}) * (SELECT base_rate FROM _k)
       AS {MONEY_SQL}) AS expected_share,
  (SELECT base_rate FROM _k) AS share_rate,
  (SELECT ccy FROM _k) AS currency, count(*) AS billing_lines,
  min(x_SnapshotId) AS billing_snapshot, '{Kind.UNMAPPED_SKU}' AS type
FROM billing b JOIN _fx f ON {FX_JOIN}
WHERE x_CatalogStatus = '{UNMAPPED}' AND ChargeCategory IN (SELECT category FROM _categories)
GROUP BY x_SkuKey
HAVING abs(CAST(sum(BilledCost * f.rate) AS {MONEY_SQL}) * (SELECT base_rate FROM _k))
       > (SELECT tol_abs FROM _k)
"""

# The partner-total rule: when usage earns less than the contract's minimum monthly guarantee,
# the top-up is owed on top of the lines. Its amount keeps the invariant: all amounts of a
# partner add up to reported share - max(expected share, guarantee).
GUARANTEE_SQL = f"""
SELECT NULL::VARCHAR AS model_id, NULL::VARCHAR AS unit, NULL::VARCHAR AS sku,
  _k.ccy AS currency, CAST(_k.mg - t.total AS {MONEY_SQL}) AS expected_share,
  CAST(t.total - _k.mg AS {MONEY_SQL}) AS amount, t.total AS computed_share,
  _k.mg AS minimum_guarantee, '{Kind.MINIMUM_GUARANTEE}' AS type
FROM (SELECT coalesce(sum(expected_share), 0) AS total FROM _g) t, _k
WHERE _k.mg IS NOT NULL AND _k.mg - t.total > _k.tol_abs
"""

LINES_SQL = f"""
WITH flagged AS (SELECT * FROM _grain WHERE type <> '{MATCHED}')
SELECT f.discrepancy_id, 'billing' AS side, b.x_SnapshotId AS snapshot_id,
  b.x_SourceFile AS source_file, b.x_SourceRow AS source_row, b.x_NativeLineId AS line_id,
  b.x_SkuKey AS sku, b.RegionId AS region, b.ChargeCategory AS charge_category,
  CAST(b.ChargePeriodStart AS DATE) AS usage_date, b.x_Tokens AS tokens,
  b.BilledCost AS amount, b.BillingCurrency AS currency
FROM flagged f JOIN billing b
  ON (f.type = '{Kind.UNMAPPED_SKU}' AND b.x_SkuKey = f.sku AND b.x_CatalogStatus = '{UNMAPPED}')
  OR (f.type <> '{Kind.UNMAPPED_SKU}' AND b.x_ModelId = f.model_id AND b.x_Unit = f.unit
      AND (f.region IS NULL OR b.RegionId = f.region))
WHERE b.ChargeCategory IN (SELECT category FROM _categories)
UNION ALL
SELECT f.discrepancy_id, 'statement', s.x_SnapshotId, s.x_SourceFile, s.x_SourceRow,
  s.StatementId || ' r' || s.Revision, NULL, s.RegionId, NULL, NULL, s.x_Tokens,
  s.ShareAmount, s.Currency
FROM flagged f JOIN statements s ON s.x_ModelId = f.model_id AND s.x_Unit = f.unit
  AND (f.region IS NULL OR s.RegionId = f.region)
WHERE s.Revision = f.revision
"""
