"""Builds the transport each configured account asks for."""

from __future__ import annotations

from bot.clock import Clock
from bot.config import AccountConfig, Config
from bot.errors import ConfigError
from bot.transport.backoff import Backoff
from bot.transport.local_puppet import LocalPuppet
from bot.transport.wechaty_adapter import WechatyTransport
from bot.transport.wechaty_compat import new_service_puppet


def local_puppet_for(account: AccountConfig, config: Config, clock: Clock) -> LocalPuppet:
    """The embedded puppet of an account, with the supervisors it reports to as friends (there is
    no phone to add them from)."""
    puppet = LocalPuppet(clock, self_id=f"{account.id}-self", self_name=account.profile.nickname)
    for supervisor in config.supervisors:
        if supervisor.account == account.id and not supervisor.contact.startswith("room:"):
            puppet.add_contact(supervisor.contact, supervisor.name, friend=True)
    return puppet


def build_transport(account: AccountConfig, config: Config, clock: Clock) -> WechatyTransport:
    if account.transport == "local":
        return WechatyTransport(account.id, local_puppet_for(account, config, clock))
    token, endpoint = account.service_token(), account.service_endpoint()
    upper = account.id.upper()
    if not token:
        raise ConfigError(
            f"accounts.{account.id}.token: the service transport needs a token "
            f"(set it in config or SALESBOT_{upper}_TOKEN)"
        )
    if not endpoint:
        raise ConfigError(
            f"accounts.{account.id}.endpoint: the service transport needs host:port of the puppet service "
            f"(set it in config or SALESBOT_{upper}_ENDPOINT)"
        )
    return WechatyTransport(
        account.id,
        new_service_puppet(token=token, endpoint=endpoint, keepalive_seconds=account.keepalive_seconds),
        token=token,
        endpoint=endpoint,
        login_timeout=account.login_timeout_seconds,
        backoff=Backoff(initial=account.reconnect_min_seconds, maximum=account.reconnect_max_seconds),
    )
