"""A live pnl actor restarted without a snapshot (as after SIGKILL) regenerates its
updates from the log on event time: they must be the ones it published live, so a
borrow fee is charged up to the ``ts_event`` of the fill or price that calls for it,
not to the clock when the actor got to it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.actors.live import run_live_until
from tests.actors.pnl.test_actor import fill_record
from tickertape.actors.pnl import PnlActor, PnlConfig
from tickertape.actors.pnl.accounting import BORROW_COLLATERAL, BORROW_YEAR_NS
from tickertape.client import Client
from tickertape.eventlog import LogReader
from tickertape.router.server import Router, RouterConfig
from tickertape.schemas import decode_payload
from tickertape.schemas.pnl import PnlUpdate
from tickertape.schemas.registry import make_envelope
from tickertape.schemas.strategy import Side

RATE = 10.0  # a year's borrow fee, as a fraction: large, so that milliseconds show


def _updates(data_dir: Path) -> list[PnlUpdate]:
    records = LogReader(data_dir, "main").read(["pnl.update.s"])
    return [decode_payload(r.type, r.v, r.payload) for r in records]  # type: ignore[misc]


async def _fill(router: Router, seq: int, side: Side, ts: int) -> None:
    """Publish, as the order engine, strategy s's fill ``seq`` of 1,000 ABC at 100."""
    record = fill_record(seq, ts, "s", side, 1000.0, 100.0)
    async with Client(router.url, "orders") as orders:
        await orders.publish([
            make_envelope(
                decode_payload(record.type, record.v, record.payload), topic=record.topic,
                source="orders", source_seq=seq, ts_event=ts, market="crypto",
            )
        ])  # fmt: skip


async def test_a_restarted_pnl_actor_charges_the_borrow_fees_it_published(
    tmp_path: Path,
) -> None:
    """Live: strategy s sells 1,000 ABC short, and buys them back 0.3 s later; the
    second fill's update charges the borrow fee of the time between the two fills.
    Restarted without a snapshot, the actor books both fills again with the same
    figures: no divergence (the fee ran to the clock before: it differed by the
    milliseconds the live actor took to get to the fill)."""
    router = Router(RouterConfig(port=0, data_dir=str(tmp_path), health_interval_s=3600.0))
    await router.start()
    config = PnlConfig(borrow_rates={"crypto": RATE})
    try:
        shorted = time.time_ns()
        await _fill(router, 1, "sell", shorted)
        pnl = asyncio.create_task(
            run_live_until(
                router, tmp_path, PnlActor(config), "pnl", lambda _: len(_updates(tmp_path)) == 2
            )
        )
        await asyncio.sleep(0.3)
        covered = time.time_ns()
        await _fill(router, 2, "buy", covered)
        first = await pnl
        live = _updates(tmp_path)
        fee = 1000 * 100.0 * BORROW_COLLATERAL * RATE * (covered - shorted) / BORROW_YEAR_NS
        assert live[-1].books[0].fees == pytest.approx(fee, rel=1e-9)

        again = await run_live_until(
            router, tmp_path, PnlActor(config), "pnl", lambda host: not host.time.catching_up
        )
        assert again.position == first.position
        assert again.divergences == []
        assert _updates(tmp_path) == live
    finally:
        await router.close()
