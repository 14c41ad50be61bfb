"""The indicators actor: TA-Lib-exact incremental indicators on bars."""
