"""Plain-text and Markdown tables for the command line and reports."""
from __future__ import annotations

from typing import Any


def format_table(rows: list[dict[str, Any]], *, markdown: bool = False) -> str:
    """Rows of equal keys as an aligned text table, or a Markdown table."""
    if not rows:
        return ""
    headers = list(rows[0])
    cells = [[str(row[h]) for h in headers] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)
