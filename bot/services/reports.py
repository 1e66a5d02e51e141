"""Read models for the dashboard and the JSON API (CRM syncs): customers, one customer, scheduled
messages, today's metrics. Everything is plain JSON-ready data."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from bot.clock import Clock
from bot.config import Config
from bot.domain.display import (
    connection_text,
    kind_name,
    lifecycle_name,
    login_name,
    objection_name,
    reason_text,
    status_name,
    step_name,
)
from bot.domain.schedule import local_at, local_day_bounds
from bot.domain.stages import Pipeline
from bot.services.dashboard import DashboardService
from bot.services.digest import DigestService, RepDay
from bot.services.logins import LoginState
from bot.services.profile import ProfileService
from bot.services.script_library import ScriptLibraryService
from bot.transport.base import LoginStatus
from storage.db import Database
from storage.models import Customer, ScheduledMessage
from storage.queries import cluster as cluster_queries
from storage.queries import dashboard as dashboard_queries
from storage.queries import listings


def iso(instant: datetime | None, config: Config) -> str | None:
    return None if instant is None else instant.astimezone(config.tz).isoformat()


def local_time(instant: datetime, config: Config) -> str:
    """A time as a person reads it, in the configured zone: 11-23 10:05."""
    return instant.astimezone(config.tz).strftime("%m-%d %H:%M")


@dataclass(frozen=True)
class ConnectionState:
    """Whether an account can send now, since when, and why (shown on the dashboard)."""

    connected: bool
    since: datetime
    reason: str


class ReportService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        config: Config,
        profile: ProfileService,
        digests: DigestService,
        scripts: ScriptLibraryService | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.profile = profile
        self.digests = digests
        self.pipeline = Pipeline(config.stages)
        # the dashboard page's funnel, trends, scripts and lists (not part of the JSON API)
        self.dashboard = DashboardService(db, clock, config, digests, scripts)
        self.connections: dict[str, ConnectionState] = {}  # kept up to date by SalesBot
        self.logins: Mapping[str, LoginState] = {}  # SalesBot's Logins.states (QR login)

    def accounts(self) -> list[dict[str, Any]]:
        """Each configured account with its connection state."""
        result = []
        for account in self.config.accounts:
            state = self.connections.get(account.id)
            result.append(
                {
                    "id": account.id,
                    "nickname": account.profile.nickname,
                    "transport": account.transport,
                    "connected": state is not None and state.connected,
                    "since": iso(state.since, self.config) if state else None,
                    "reason": state.reason if state else "not started",
                    "reason_label": connection_text(
                        state.reason if state else "not started", bool(state and state.connected)
                    ),
                }
            )
        return result

    def login_states(self) -> list[dict[str, Any]]:
        """Accounts whose puppet reported a login step (QR code, scan, login, logout), with the code
        to scan while one waits; accounts that never needed a scan are not listed."""
        result = []
        for account in self.config.accounts:
            state = self.logins.get(account.id)
            if state is None:
                continue
            qr = state.qr if state.status in (LoginStatus.WAITING, LoginStatus.SCANNED) else ""
            result.append(
                {
                    "id": account.id,
                    "nickname": account.profile.nickname,
                    "status": str(state.status),
                    "label": login_name(state.status),
                    "since": local_time(state.since, self.config),
                    "qr": qr,
                    # tells a renewed code from the last one (times show minutes) without the code
                    "code": hashlib.sha256(qr.encode()).hexdigest()[:12] if qr else "",
                }
            )
        return result

    async def cluster(self) -> dict[str, Any]:
        """The processes on this database (several on PostgreSQL) and which one owns each account
        (its lease): an account another process runs has no connection state here."""
        async with self.db.transaction() as session:
            processes = await cluster_queries.processes(session)
            leases = await cluster_queries.leases(session)
        now = self.clock.now()
        owned: dict[str, list[str]] = {}
        for lease in leases:
            if lease.expires_at > now:
                owned.setdefault(lease.owner, []).append(lease.account_id)
        return {
            "processes": [
                {
                    "host": p.host,
                    "pid": p.pid,
                    "since": iso(p.started_at, self.config),
                    "heartbeat_age_seconds": max(0, round((now - p.heartbeat_at).total_seconds())),
                    "alive": p.expires_at > now,
                    "accounts": sorted(owned.get(p.id, [])),
                }
                for p in processes
            ],
            "owners": {
                lease.account_id: {"host": lease.host, "pid": lease.pid}
                for lease in leases
                if lease.expires_at > now
            },
        }

    def _customer(self, customer: Customer) -> dict[str, Any]:
        return {
            "id": customer.id,
            "account": customer.account_id,
            "account_nickname": self._nickname(customer.account_id),
            "wechat_id": customer.wechat_id,
            "name": customer.display_name,
            "remark": customer.remark,
            "source": customer.source_channel,
            "stage": customer.stage,
            "stage_label": self.pipeline.label(customer.stage),
            "lifecycle": customer.lifecycle,
            "lifecycle_label": lifecycle_name(customer.lifecycle),
            "added_at": iso(customer.added_at, self.config),
            "last_inbound_at": iso(customer.last_inbound_at, self.config),
            "last_outbound_at": iso(customer.last_outbound_at, self.config),
            "deleted_at": iso(customer.deleted_at, self.config),
            "paused": customer.paused_at is not None,
        }

    async def customers(
        self,
        *,
        stage: str = "",
        tag: str = "",
        account: str = "",
        silent_days: int = 0,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        parsed = self.profile.parse_tags([tag])[0] if tag else None
        where = listings.CustomerFilter(
            stage=(self.pipeline.resolve(stage) or stage) if stage else "",
            account=account,
            tag=(parsed.group, parsed.value) if parsed is not None else None,
            silent_since=self.clock.now() - timedelta(days=silent_days) if silent_days > 0 else None,
        )
        async with self.db.transaction() as session:
            total = await listings.count_customers(session, where)
            rows = await listings.customers(session, where, offset, limit)
        return {
            "total": total,
            "offset": offset,
            "limit": limit,
            "customers": [self._customer(c) for c in rows],
        }

    async def customer(self, customer_id: int) -> dict[str, Any]:
        card = await self.profile.card(customer_id)
        vocabulary = self.profile.vocabulary
        return {
            **self._customer(card.customer),
            "tags": [
                {
                    "group": vocabulary.label(t.group) if t.group else "",
                    "value": t.value,
                    "source": t.source,
                    "added_by": t.added_by,
                    "added_at": iso(t.added_at, self.config),
                }
                for t in card.tags
            ],
            "notes": [{"text": n.text, "author": n.author, "at": iso(n.at, self.config)} for n in card.notes],
            "objections": card.objections,
            "objection_labels": [objection_name(o) for o in card.objections],
            "pending": [
                self._scheduled(row, {customer_id: card.customer.remark or card.customer.display_name})
                for row in card.pending
            ],
        }

    def _nickname(self, account_id: str) -> str:
        known = {a.id: a.profile.nickname for a in self.config.accounts}
        return known.get(account_id, account_id)

    def _scheduled(self, row: ScheduledMessage, names: dict[int, str] | None = None) -> dict[str, Any]:
        return {
            "id": row.id,
            "account": row.account_id,
            "customer_id": row.customer_id,
            # "" for a message to a rep or supervisor (alerts, digests)
            "customer_name": (names or {}).get(row.customer_id, "") if row.customer_id is not None else "",
            "kind": row.kind,
            "kind_label": kind_name(row.kind),
            "step": row.step,
            "step_label": step_name(row.kind, row.step),
            "status": row.status,
            "status_label": status_name(row.status),
            "due_at": iso(row.due_at, self.config),
            "error": row.last_error,
            "error_label": reason_text(row.last_error),
        }

    async def scheduled(self, status: str = "pending", limit: int = 100) -> list[dict[str, Any]]:
        async with self.db.transaction() as session:
            rows = await listings.scheduled(session, status, limit)
            names = await dashboard_queries.names(
                session, {row.customer_id for row in rows if row.customer_id is not None}
            )
        return [self._scheduled(row, names) for row in rows]

    async def funnel(self) -> list[dict[str, Any]]:
        async with self.db.transaction() as session:
            counts = await listings.stage_counts(session)
        return [
            {"stage": s.key, "label": s.label, "customers": counts.get(s.key, 0)}
            for s in self.pipeline.stages
        ]

    async def metrics(self, day: date | None = None) -> dict[str, Any]:
        """Today's numbers (so far) per rep and for the team, as in the digest."""
        tz = self.config.tz
        now = self.clock.now()
        day = day or now.astimezone(tz).date()
        start, end = local_day_bounds(local_at(day, datetime.min.time(), tz), tz)
        cut = min(end, now + timedelta(microseconds=1))  # "so far" includes this very moment
        accounts = [a.id for a in self.config.accounts]
        async with self.db.transaction() as session:
            days = await self.digests.team_day(session, accounts, start, cut, cut)

        def view(d: RepDay) -> dict[str, Any]:
            return {
                "new_friends": d.new_friends,
                "welcomes_sent": d.welcomes_sent,
                "welcomes_failed": d.welcomes_failed,
                "replied": d.replied,
                "objections": dict(d.objections),
                "objection_labels": {objection_name(k): v for k, v in d.objections.items()},
                "stage_moves": dict(d.stage_moves),
                "orders": d.orders,
                "scheduled_sent": d.scheduled_sent,
                "scheduled_failed": d.scheduled_failed,
                "scheduled_expired": d.scheduled_expired,
                "planned_tomorrow": d.planned_tomorrow,
                "deleted": d.deleted,
                "owed_replies": len(d.owed),
                "at_risk": len(d.at_risk),
            }

        team = RepDay()
        for d in days.values():
            team.add(d)
        return {
            "date": day.isoformat(),
            "until": iso(cut, self.config),
            "reps": {
                a: {"nickname": self.config.account(a).profile.nickname, **view(days[a])} for a in accounts
            },
            "team": view(team),
            "funnel": await self.funnel(),
        }
