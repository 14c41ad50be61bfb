"""The market-data actor: importers, sessions, corporate actions, bars, live feeds."""
