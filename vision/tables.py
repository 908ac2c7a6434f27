"""Rows to show in the research notebooks (HTML in Jupyter, Markdown as text), and the
taxonomy lookups their tables use. Shared by model evaluation (:mod:`training.analysis`)
and scan analysis (:mod:`serving.scan.analysis`)."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

from .taxonomy import get_category, label_name


@dataclass
class Table:
    """Rows to show: an HTML table in a notebook, Markdown as text, a DataFrame on request."""

    columns: list[str]
    rows: list[list]
    title: str = ""

    def records(self) -> list[dict]:
        """The rows as dicts keyed by column."""
        return [dict(zip(self.columns, row)) for row in self.rows]

    def column(self, name: str) -> list:
        """One column's values; raises ``KeyError`` naming the columns if there is none."""
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; columns are {', '.join(self.columns)}")
        k = self.columns.index(name)
        return [row[k] for row in self.rows]

    def to_markdown(self, digits: int = 3) -> str:
        lines = [f"**{self.title}**", ""] if self.title else []
        lines += ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(_cell(v, digits) for v in row) + " |" for row in self.rows]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_cell(v, 3))}</td>" for v in row) + "</tr>" for row in self.rows
        )
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def to_pandas(self):
        """A ``pandas.DataFrame`` (pandas is not a dependency of wildscan: install it to use this)."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=self.columns)


def _cell(value, digits: int) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def category_name(label: str) -> str:
    """English display name of a label, or the label itself when the taxonomy lacks it."""
    try:
        return label_name(label)
    except KeyError:
        return label


def is_wildlife(label: str) -> bool:
    try:
        return get_category(label).is_wildlife
    except KeyError:
        return False
