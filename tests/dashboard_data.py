"""Three days of a rep's week, seeded through the simulation: what the dashboard's funnel, trends,
lists and script statistics are checked against (in and out of a browser)."""

from __future__ import annotations

from datetime import timedelta

from bot.simulate import Simulation


async def seed_three_days(sim: Simulation) -> None:
    """From Monday 10:00 (Asia/Shanghai) to Wednesday about 10:01.

    Monday: 张三 and 李四 add the rep; 张三 objects to the price. Tuesday 00:30 local (Monday in
    UTC): 王五 adds the rep. Tuesday 10:00: 李四 writes and orders, 王五 objects to the price.
    Wednesday: 张三 writes again and moves to 意向; the rep sends 王五 a price script.
    """
    await sim.friend_request("c1", "张三")
    await sim.friend_request("c2", "李四")
    await sim.advance(timedelta(minutes=1))
    await sim.customer_says("c1", "太贵了")
    await sim.advance(timedelta(hours=14, minutes=29))  # Tuesday 00:30 local
    await sim.friend_request("c3", "王五")
    await sim.advance(timedelta(hours=9, minutes=30))  # Tuesday 10:00
    await sim.customer_says("c2", "在吗")
    await sim.rep_types("/order @李四")
    await sim.customer_says("c3", "太贵了")
    await sim.advance(timedelta(days=1))  # Wednesday 10:00
    await sim.customer_says("c1", "好的")
    await sim.rep_types("/stage @张三 intent")
    await sim.rep_types("/scripts 价格")
    await sim.rep_types("/use 1 @王五")
    await sim.advance(timedelta(seconds=30))
