"""The leaderboard's error type."""

from __future__ import annotations


class LeaderboardError(RuntimeError):
    """A problem with a results folder or the inputs of a leaderboard run."""
