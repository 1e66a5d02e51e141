"""The vocabulary of a customer message's reading: one objection (or none) and any signals."""

from __future__ import annotations

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

# what a rep reads and may type (/wrong 预算, /label 转介绍); English keys are accepted too
SIGNAL_NAMES = {
    "buying_signal": "购买信号",
    "opt_out": "退订",
    "opt_out_soft": "别催了",
    "referral": "转介绍",
}
