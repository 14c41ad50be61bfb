"""Example strategies and configurations a user copies (importable as ``examples``)."""
