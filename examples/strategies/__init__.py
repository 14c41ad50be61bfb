"""Example strategies: ``examples.strategies.sma_cross:SmaCross`` and
``examples.strategies.rsi_reversion:RsiReversion``."""
