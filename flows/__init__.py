"""Prefect flows: orchestration only. The rules live in ``revshare``."""
