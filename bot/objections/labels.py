"""The vocabulary of a customer message's reading: one objection (or none) and any signals."""

from __future__ import annotations

from bot.domain.display import SIGNAL_NAMES

OBJECTIONS = (
    "price",
    "budget",
    "comparison",
    "stalling",
    "trust",
    "quality",
    "after_sales",
    "fit",
    "authority",
)
SIGNALS = ("buying_signal", "opt_out", "opt_out_soft", "referral")

# what a rep reads and may type (/wrong 预算, /label 转介绍; English keys are accepted too): the
# names live in the one display table
__all__ = ["OBJECTIONS", "SIGNALS", "SIGNAL_NAMES"]
