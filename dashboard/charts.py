"""Bar charts drawn on the server as SVG (no script, no third-party asset): one bar per day,
each with its day and value as a tooltip (<title>) and in an accessible label, and the same
figures in a table beside the chart for those who would rather read them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

WIDTH = 720
HEIGHT = 220
LEFT = 64  # room for the value axis
BOTTOM = 24  # room for the day labels
TOP = 8


@dataclass
class Bar:
    day: date
    value: int | Decimal
    text: str
    value_text: str
    x: float
    y: float
    width: float
    height: float


def format_value(value, unit: str) -> str:
    if unit == "sats":
        return f"{int(value):,} sats"
    if unit == "paid":
        return f"{int(value):,} paid"
    return f"{Decimal(value):,.2f} {unit}"


def _nice_ceiling(value) -> int | Decimal:
    """The top of the value axis: the largest value rounded up to 1, 2 or 5 times a power
    of ten (so the axis reads 0 / 500 / 1,000, not 0 / 487 / 973)."""
    if value <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def bar_chart(points: list[tuple[date, int | Decimal]], unit: str, title: str) -> dict:
    top = _nice_ceiling(max((v for _, v in points), default=0))
    plot_width = WIDTH - LEFT
    plot_height = HEIGHT - BOTTOM - TOP
    slot = plot_width / max(len(points), 1)
    bars = []
    for index, (day, value) in enumerate(points):
        height = float(value) / float(top) * plot_height if value else 0.0
        bars.append(
            Bar(
                day=day,
                value=value,
                text=f"{day:%a %d %b}: {format_value(value, unit)}",
                value_text=format_value(value, unit),
                x=round(LEFT + index * slot + slot * 0.15, 2),
                y=round(TOP + plot_height - height, 2),
                width=round(slot * 0.7, 2),
                height=round(height, 2),
            )
        )
    # About six day labels whatever the period: every day for 7, every 5th for 30...
    every = max(1, round(len(points) / 6))
    labels = [
        {"x": round(b.x + b.width / 2, 2), "text": f"{b.day:%d %b}"}
        for i, b in enumerate(bars)
        if (len(bars) - 1 - i) % every == 0
    ]
    ticks = [
        {"y": round(TOP + plot_height - plot_height * part / 2, 2), "text": _tick(top * part / 2)}
        for part in (0, 1, 2)
    ]
    return {
        "title": title,
        "unit": unit,
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "baseline": TOP + plot_height,
        "bars": bars,
        "labels": labels,
        "ticks": ticks,
        "total": format_value(sum((v for _, v in points), 0), unit),
    }


def _tick(value) -> str:
    if value == int(value):
        return f"{int(value):,}"
    return f"{Decimal(value):,.2f}"
