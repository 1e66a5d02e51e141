"""One contact's events one at a time, in order; a contact's lock goes once nobody uses it
(bot/keyed_locks.py)."""

from __future__ import annotations

import asyncio
import contextlib

from bot.keyed_locks import KeyedLocks


async def test_users_of_one_key_go_one_at_a_time_in_order_and_other_keys_do_not_wait() -> None:
    locks = KeyedLocks()
    log: list[str] = []
    release = asyncio.Event()

    async def use(key: str, name: str, wait: bool = False) -> None:
        async with locks.hold(key):
            log.append(f"{name} in")
            if wait:
                await release.wait()
            log.append(f"{name} out")

    first = asyncio.create_task(use("c1", "a", wait=True))
    await asyncio.sleep(0)
    queued = [asyncio.create_task(use("c1", name)) for name in ("b", "c")]
    await use("c2", "other")  # another contact is not held up by c1's
    assert log == ["a in", "other in", "other out"]
    assert len(locks) == 1, "c1 is held and waited for; c2's lock is gone"
    release.set()
    await asyncio.gather(first, *queued)
    assert log[3:] == ["a out", "b in", "b out", "c in", "c out"]
    assert len(locks) == 0, "nobody holds or waits: no lock is kept"


async def test_a_user_that_fails_or_is_cancelled_releases_the_key() -> None:
    locks = KeyedLocks()

    async def fail() -> None:
        async with locks.hold("c1"):
            raise ValueError("handler failed")

    with contextlib.suppress(ValueError):
        await fail()
    holder_in = asyncio.Event()

    async def hold_forever() -> None:
        async with locks.hold("c1"):
            holder_in.set()
            await asyncio.Event().wait()

    holder = asyncio.create_task(hold_forever())
    await holder_in.wait()
    waiter = asyncio.create_task(hold_forever())  # waits behind the holder
    await asyncio.sleep(0)
    waiter.cancel()
    holder.cancel()
    await asyncio.gather(holder, waiter, return_exceptions=True)
    assert len(locks) == 0
    async with asyncio.timeout(1):
        async with locks.hold("c1"):
            pass


async def test_a_waiter_cancelled_behind_a_holder_leaves_the_holders_lock_in_place() -> None:
    locks = KeyedLocks()
    holder_in, release = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def use(name: str, hold: bool = False) -> None:
        async with locks.hold("c1"):
            order.append(name)
            if hold:
                holder_in.set()
                await release.wait()

    holder = asyncio.create_task(use("holder", hold=True))
    await holder_in.wait()
    waiter = asyncio.create_task(use("cancelled"))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert len(locks) == 1, "the holder still holds c1"
    later = asyncio.create_task(use("later"))  # must wait for the holder: the same lock, not a new one
    await asyncio.sleep(0)
    assert order == ["holder"]
    release.set()
    await asyncio.gather(holder, later)
    assert order == ["holder", "later"]
    assert len(locks) == 0


async def test_a_user_arriving_while_the_next_one_holds_waits_for_it() -> None:
    """The first holder left and the second holds now: a third must queue behind the second."""
    locks = KeyedLocks()
    gates = {name: asyncio.Event() for name in ("a", "b")}
    inside: list[str] = []

    async def use(name: str) -> None:
        async with locks.hold("c1"):
            inside.append(name)
            if name in gates:
                await gates[name].wait()
            inside.remove(name)

    a = asyncio.create_task(use("a"))
    await asyncio.sleep(0)
    b = asyncio.create_task(use("b"))
    await asyncio.sleep(0)
    gates["a"].set()
    await a
    await asyncio.sleep(0)
    assert inside == ["b"]
    c = asyncio.create_task(use("c"))
    for _ in range(3):
        await asyncio.sleep(0)
    assert inside == ["b"], "c waits for b"
    gates["b"].set()
    await asyncio.gather(b, c)
    assert inside == [] and len(locks) == 0
