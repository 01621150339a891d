"""Helpers every tier shares: errors, atomic file writes, memory limits, statistics. numpy and the standard library only."""
