"""Checks shared by the options dataclasses: a value from a CLI, a JSON config, a form or an API
client is checked the same way, with a message that names the option."""

from __future__ import annotations


def check_whole_numbers(options, bounds) -> None:
    """Each ``(name, low, high)`` of ``bounds`` must be a whole number (not a bool) in ``[low, high]``."""
    for name, low, high in bounds:
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name} must be a whole number from {low} to {high}, not {value!r}")
