"""Settings of the Oracle Cloud connector (``type: oci`` in config/partners.yaml)."""

from __future__ import annotations

from typing import Literal

from connectors.base import ConnectorSettings


class OciSettings(ConnectorSettings):
    """Where the cost reports sit, and which report column the catalog matches."""

    type: Literal["oci"]
    #: Folder holding the cost reports as Oracle delivers them (``reports/cost-csv/*.csv.gz``
    #: copied from the ``bling`` namespace); relative paths resolve against the data folder.
    path: str
    #: Which files under ``path`` to read; only ``.csv`` and ``.csv.gz`` matches are kept.
    glob: str = "**/*"
    #: Report column whose value becomes x_SkuKey (blank values fall back to cost/productSku).
    sku_key_column: str = "product/Description"
