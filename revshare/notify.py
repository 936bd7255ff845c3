"""Notifications: material new or changed discrepancies, and failed runs.

Two channels, standard library only: a Slack-compatible webhook (``urllib``: a JSON POST with
a ``text`` field, which Slack, Mattermost, Teams workflows and Google Chat accept) and email
(``smtplib``). Configured in ``<REVSHARE_CONFIG_DIR>/notifications.yaml`` (or the file named
by ``REVSHARE_NOTIFICATIONS``). Secrets never sit in the file nor in logs: the webhook URL (a
bearer secret in Slack's case) and the SMTP password are read from environment variables
the file *names*. A channel that fails to deliver is reported in the result, never raised:
a notification outage must not turn a good reconciliation into a failed run.

"New or changed" compares a run with the previous recorded run of the same (period, partner):
a discrepancy id not seen there is new; one whose amount moved by a cent or more is changed.
Materiality is a threshold per contract currency (``default`` for the others).
"""

from __future__ import annotations

import json
import os
import smtplib
import ssl
import urllib.request
from dataclasses import dataclass, field
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml

ENV_FILE = "REVSHARE_NOTIFICATIONS"
CENT = Decimal("0.01")


@dataclass(frozen=True)
class WebhookConfig:
    url_env: str
    timeout_seconds: float = 10.0

    @property
    def url(self) -> str | None:
        return os.environ.get(self.url_env) or None


@dataclass(frozen=True)
class EmailConfig:
    host: str
    port: int
    sender: str
    to: tuple[str, ...]
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password_env: str | None = None
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class NotifyConfig:
    enabled: bool = False
    on_failure: bool = True
    on_discrepancies: bool = True
    materiality: dict[str, Decimal] = field(default_factory=dict)
    webhook: WebhookConfig | None = None
    email: EmailConfig | None = None

    def threshold(self, currency: str | None) -> Decimal:
        return self.materiality.get(currency or "", self.materiality.get("default", Decimal(0)))


def load_notify_config(config_dir: Path) -> NotifyConfig:
    """Read the notifications file; absent means disabled."""
    path = Path(os.environ.get(ENV_FILE) or config_dir / "notifications.yaml")
    if not path.exists():
        return NotifyConfig()
    raw = yaml.safe_load(path.read_text()) or {}
    hook = raw.get("webhook") or {}
    mail = raw.get("email") or {}
    return NotifyConfig(
        enabled=bool(raw.get("enabled", False)),
        on_failure=bool(raw.get("on_failure", True)),
        on_discrepancies=bool(raw.get("on_discrepancies", True)),
        materiality={str(k): Decimal(str(v)) for k, v in (raw.get("materiality") or {}).items()},
        webhook=WebhookConfig(hook["url_env"], float(hook.get("timeout_seconds", 10)))
        if hook.get("url_env")
        else None,
        email=EmailConfig(
            host=str(mail["host"]),
            port=int(mail.get("port", 25)),
            sender=str(mail["from"]),
            to=tuple(mail.get("to") or ()),
            starttls=bool(mail.get("starttls", False)),
            ssl=bool(mail.get("ssl", False)),
            username=mail.get("username"),
            password_env=mail.get("password_env"),
            timeout_seconds=float(mail.get("timeout_seconds", 10)),
        )
        if mail.get("host") and mail.get("to")
        else None,
    )


def material_changes(
    current: list[dict[str, Any]],
    previous: dict[str, dict[str, Any]] | None,
    config: NotifyConfig,
) -> list[dict[str, Any]]:
    """Discrepancies of ``current`` (rows with discrepancy_id, partner, type, amount,
    currency) that are new or changed since ``previous`` and at or above materiality."""
    out = []
    for d in current:
        amount = _at_stake(d)
        if abs(amount) < config.threshold(d.get("currency")):
            continue
        before = (previous or {}).get(d["discrepancy_id"])
        if before is None:
            out.append({**d, "change": "new", "previous_amount": None})
        elif abs(amount - _at_stake(before)) >= CENT:
            out.append({**d, "change": "changed", "previous_amount": before["amount"]})
    return sorted(out, key=lambda d: (-abs(_at_stake(d)), d["partner"], d["type"]))


def _at_stake(d: dict[str, Any]) -> Decimal:
    """A discrepancy's money: its amount, or for a statement-only flag (no amount) the
    estimate at stake; a flag with neither counts as zero."""
    value = d["amount"] if d.get("amount") is not None else d.get("at_stake")
    return Decimal(value or 0)


def discrepancy_message(run: dict[str, Any], changes: list[dict[str, Any]]) -> tuple[str, str]:
    """(subject, body) for material discrepancy changes."""
    subject = f"[revshare] {run['period']}: {len(changes)} new or changed material discrepancies"
    lines = [f"Run {run['run_id']} ({run['status']}), report: {run['report']}", ""]
    for c in changes[:50]:
        was = f" (was {_money(c['previous_amount'])})" if c["change"] == "changed" else ""
        lines.append(
            f"- {c['change']}: {c['partner']} {c['type']} {c.get('model_id') or c.get('sku')}"
            f" {_shown(c)} {c.get('currency') or ''}{was}"
        )
    if len(changes) > 50:
        lines.append(f"... and {len(changes) - 50} more in the report")
    return subject, "\n".join(lines)


def failure_message(run: dict[str, Any], failures: list[dict[str, Any]]) -> tuple[str, str]:
    """(subject, body) for a failed run or quarantined partners."""
    subject = f"[revshare] {run['period']}: run {run['status']}"
    lines = [f"Run {run['run_id']} ({run['status']}), report: {run.get('report') or '-'}", ""]
    lines += [f"- {f['partner']}: {f.get('reason') or f.get('status')}" for f in failures]
    return subject, "\n".join(lines)


def _money(x: Any) -> str:
    return "" if x is None else str(Decimal(x).quantize(CENT))


def _shown(c: dict[str, Any]) -> str:
    """The amount, or for a statement-only flag the estimate at stake, marked as one."""
    if c.get("amount") is None and c.get("at_stake") is not None:
        return f"about {_money(c['at_stake'])} at stake (estimate)"
    return _money(c.get("amount"))


def send_webhook(hook: WebhookConfig, subject: str, body: str) -> None:
    url = hook.url
    if not url:
        raise RuntimeError(f"webhook URL variable {hook.url_env} is not set")
    data = json.dumps({"text": f"*{subject}*\n{body}"}).encode()
    req = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=hook.timeout_seconds) as resp:
        if resp.status >= 300:
            raise RuntimeError(f"webhook answered HTTP {resp.status}")


def send_email(mail: EmailConfig, subject: str, body: str) -> None:
    msg = EmailMessage()
    msg["Subject"], msg["From"], msg["To"] = subject, mail.sender, ", ".join(mail.to)
    msg.set_content(body)
    cls = smtplib.SMTP_SSL if mail.ssl else smtplib.SMTP
    with cls(mail.host, mail.port, timeout=mail.timeout_seconds) as smtp:
        if mail.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if mail.username:
            password = os.environ.get(mail.password_env or "", "")
            smtp.login(mail.username, password)
        smtp.send_message(msg)


def deliver(config: NotifyConfig, subject: str, body: str) -> list[dict[str, str]]:
    """Send on every configured channel; one result per channel, errors as text (no URL,
    no password: only the exception's type and the channel's name)."""
    results = []
    channels = [("webhook", config.webhook, send_webhook), ("email", config.email, send_email)]
    for name, channel, send in channels:
        if channel is None:
            continue
        try:
            send(channel, subject, body)
            results.append({"channel": name, "status": "sent", "subject": subject})
        except Exception as exc:  # reported, never raised: see the module docstring
            results.append({"channel": name, "status": "failed", "error": type(exc).__name__})
    return results


def notify_run(
    config: NotifyConfig,
    run: dict[str, Any],
    changes: list[dict[str, Any]],
    failures: list[dict[str, Any]],
) -> list[dict[str, str]]:
    """Apply the policy: one message for failures, one for material changes."""
    if not config.enabled:
        return []
    sent: list[dict[str, str]] = []
    if config.on_failure and failures:
        sent += deliver(config, *failure_message(run, failures))
    if config.on_discrepancies and changes:
        sent += deliver(config, *discrepancy_message(run, changes))
    return sent
