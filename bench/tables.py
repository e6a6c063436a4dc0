"""Markdown tables of benchmark results, in the shape docs/performance.md shows them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

_RULES = {"l": "---", "r": "---:"}


def ratio(a: float | None, b: float | None) -> str:
    """``a / b`` to two decimals, or ``-`` where either is missing (or zero)."""
    return f"{a / b:.2f}" if a and b else "-"


def markdown_table(
    columns: Sequence[str], align: str, rows: Iterable[Sequence[object]]
) -> list[str]:
    """The lines of a Markdown table; ``align`` has a letter per column: ``l`` left, ``r`` right."""
    if len(align) != len(columns):
        raise ValueError(f"{len(columns)} columns, {len(align)} alignments")
    return [
        _row(columns),
        "|" + "|".join(_RULES[a] for a in align) + "|",
        *(_row(cells) for cells in rows),
    ]


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"
