"""revshare-recon core: the rules of revenue-share reconciliation.

This package never imports Prefect or a cloud SDK, so the rules can be tested and reused
without an orchestrator or a cloud account.
"""

__version__ = "0.1.0"
