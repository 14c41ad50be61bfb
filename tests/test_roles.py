"""The built-in roles: who may publish which topics (in-process and router defaults)."""

from __future__ import annotations

import pytest

from tickertape.roles import publish_rule


@pytest.mark.parametrize(
    ("identity", "topic", "allowed"),
    [
        ("strategy.sma", "strategy.intent.sma", True),
        ("strategy.sma", "strategy.intent.sma.extra", True),
        ("strategy.sma", "strategy.intent.rsi", False),
        ("strategy.sma", "risk.approved.sma", False),
        ("strategy.sma", "order.filled.us", False),
        ("strategy.sma", "system.alert.strategy.sma", True),
        ("strategy.sma", "system.alert.risk", False),
        ("risk", "risk.approved.sma", True),
        ("risk", "risk.state", True),
        ("risk", "order.submitted.us", False),
        ("orders", "order.filled.us", True),
        ("orders", "risk.approved.sma", False),
        ("pnl", "pnl.update.portfolio", True),
        ("marketdata", "md.bar.1m.crypto.BTCUSDT", True),
        ("marketdata", "raw.binance.btcusdt_trade", True),
        ("indicators", "indicator.sma_10.v1.us.6EH4", True),
        ("indicators", "md.bar.1m.us.6EH4", False),
        ("my.own.actor", "signals.custom", True),
        ("my.own.actor", "risk.approved.x", False),
        ("my.own.actor", "md.trade.crypto.BTCUSDT", False),
        ("my.own.actor", "strategy.intent.sma", False),
    ],
)
def test_publish_rule(identity: str, topic: str, allowed: bool) -> None:
    rule = publish_rule(identity)
    assert rule.permits(topic) is allowed, rule.describe()
