"""Finding customers the way a rep names them (/find, @name) and what their card shows."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, func, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Customer, CustomerTag, Event


async def objection_labels(session: AsyncSession, customer_id: int) -> list[str]:
    """The objections read in the customer's messages, oldest first."""
    query = (
        select(Event.data)
        .where(Event.customer_id == customer_id, Event.kind == "objection")
        .order_by(col(Event.id))
    )
    return [str(data.get("label", "")) for data in (await session.exec(query)).all()]


def _found(account_id: str, text: str, stage: str | None, tag: tuple[str, str] | None) -> tuple[Any, ...]:
    """Name or remark contains ``text``, or in ``stage``, or tagged: the exact (group, value) ``tag``
    when given, else a tag value containing ``text``."""
    # autoescape: a typed % or _ is that character, not a LIKE wildcard that matches everyone
    conditions: list[Any] = [
        col(Customer.display_name).contains(text, autoescape=True),
        col(Customer.remark).contains(text, autoescape=True),
    ]
    if stage is not None:
        conditions.append(Customer.stage == stage)
    tagged = select(CustomerTag.customer_id).where(col(CustomerTag.value).contains(text, autoescape=True))
    if tag is not None:
        group, value = tag
        tagged = select(CustomerTag.customer_id).where(CustomerTag.group == group, CustomerTag.value == value)
    conditions.append(col(Customer.id).in_(tagged))
    return (Customer.account_id == account_id, or_(*conditions))


async def count_found(
    session: AsyncSession, account_id: str, text: str, stage: str | None, tag: tuple[str, str] | None
) -> int:
    """How many of the account's customers /find matches (see :func:`found`)."""
    query = select(func.count()).select_from(Customer).where(*_found(account_id, text, stage, tag))
    return int((await session.exec(query)).one())


async def found(
    session: AsyncSession,
    account_id: str,
    text: str,
    stage: str | None,
    tag: tuple[str, str] | None,
    offset: int,
    limit: int,
) -> list[Customer]:
    """One page of the account's customers /find matches, by id."""
    query = (
        select(Customer)
        .where(*_found(account_id, text, stage, tag))
        .order_by(col(Customer.id))
        .offset(offset)
        .limit(limit)
    )
    return list((await session.exec(query)).all())


def _mine(account_id: str) -> Any:
    return select(Customer).where(Customer.account_id == account_id).order_by(col(Customer.id))


async def named(session: AsyncSession, account_id: str, folded: str) -> list[Customer]:
    """The account's customers whose lower-cased name or remark is exactly ``folded``, by id."""
    display, remark = func.lower(Customer.display_name), func.lower(Customer.remark)
    query = _mine(account_id).where(or_(display == folded, remark == folded))
    return list((await session.exec(query)).all())


async def name_contains(session: AsyncSession, account_id: str, folded: str) -> list[Customer]:
    """The account's customers whose lower-cased name or remark contains ``folded`` (a % or _ in it
    is that character, not a wildcard), by id."""
    display, remark = func.lower(Customer.display_name), func.lower(Customer.remark)
    query = _mine(account_id).where(
        or_(display.contains(folded, autoescape=True), remark.contains(folded, autoescape=True))
    )
    return list((await session.exec(query)).all())
