"""The report as a document: blocks kept twice, as Markdown and as self-contained HTML, and the files
(PNG, CSV) that go beside them; with the few ways a number is written on the page.

A table's CSV keeps its numbers, written to 10 significant digits: enough for any statistic here,
and 100 · 0.2731 comes out as 27.31, not 27.310000000000002. The page shows the rounded copy.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

import fastseed
from fastseed import FastseedError

CSV_FLOATS = "%.10g"
CSS = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}caption{text-align:left;"
       "font-weight:600;padding:0.3em 0}th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right}"
       "th{background:#f3f3f3}figure{margin:1.5em 0}img{max-width:100%}"
       "figcaption{font-style:italic;color:#555}footer{color:#888;margin-top:3em}"
       "p.headline{font-size:1.15em;font-weight:600}")


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, float_format=CSV_FLOATS).encode()


class Document:
    """The report: (Markdown, HTML) blocks in order, and the files (PNG, CSV) that go beside them; its
    tables as DataFrames and its figures as matplotlib Figures too, by name (the Python API's report)."""

    def __init__(self, title: str):
        self.title, self.blocks, self.files = title, [], {}
        self.tables, self.figures = {}, {}

    def heading(self, text: str) -> None:
        self.blocks.append((f"## {text}", f"<h2>{escape(text)}</h2>"))

    def text(self, text: str) -> None:
        self.blocks.append((text, f"<p>{escape(text)}</p>"))

    def headline(self, text: str) -> None:
        """The sentence a reader takes away, above everything else."""
        self.blocks.append((f"**{text}**", f"<p class='headline'>{escape(text)}</p>"))

    def table(self, name: str, data: pd.DataFrame, shown: pd.DataFrame, caption: str) -> None:
        """`data` (numbers) goes to name.csv; `shown` (formatted text) to the page."""
        self.files[f"{name}.csv"] = csv_bytes(data)
        self.tables[name] = data
        head = list(map(str, shown.columns))
        rows = [list(map(str, row)) for row in shown.itertuples(index=False)]
        md_row = lambda cells: "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
        html_row = lambda cells, tag: "<tr>" + "".join(f"<{tag}>{escape(c)}</{tag}>" for c in cells) \
            + "</tr>"
        md = "\n".join([f"**{caption}** ([{name}.csv]({name}.csv))", "", md_row(head),
                        "|" + "---|" * len(head)] + [md_row(r) for r in rows])
        self.blocks.append((md, f"<table id='{name}'><caption>{escape(caption)} ({name}.csv)</caption>"
                                f"<thead>{html_row(head, 'th')}</thead>"
                                f"<tbody>{''.join(html_row(r, 'td') for r in rows)}</tbody></table>"))

    def csv(self, name: str, data: pd.DataFrame) -> None:
        """A table that goes to name.csv only (one row per run or per image: not for a page)."""
        self.files[f"{name}.csv"] = csv_bytes(data)
        self.tables[name] = data

    def figure(self, name: str, fig, caption: str) -> None:
        from fastseed.report.figures import png
        image = self.files[f"{name}.png"] = png(fig)
        self.figures[name] = fig
        data = base64.b64encode(image).decode()
        self.blocks.append((f"![{caption}]({name}.png)\n\n*{caption}*",
                            f"<figure id='{name}'><img alt='{escape(caption)}' src='data:image/png;base64,"
                            f"{data}'><figcaption>{escape(caption)}</figcaption></figure>"))

    def markdown(self) -> str:
        return "\n\n".join([f"# {self.title}"] + [m for m, _ in self.blocks]) + "\n"

    def write(self, out: Path) -> None:
        page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(self.title)}"
                f"</title><style>{CSS}</style></head><body><h1>{escape(self.title)}</h1>\n"
                + "\n".join(h for _, h in self.blocks)
                + f"\n<footer>fastseed {fastseed.__version__}</footer></body></html>\n")
        try:
            out.mkdir(parents=True, exist_ok=True)
            for name, data in self.files.items():
                (out / name).write_bytes(data)
            (out / "report.md").write_text(self.markdown(), encoding="utf-8")
            (out / "report.html").write_text(page, encoding="utf-8")
        except OSError as err:
            raise FastseedError(f"cannot write the report to {out}: {err.strerror or err}") from None


# ---- numbers on the page ---------------------------------------------------------------------------

def num(x, digits: int = 2) -> str:
    """A number for a table cell; '—' where there is none (NaN, inf)."""
    return f"{x:,.{digits}f}" if x is not None and np.isfinite(x) else "—"


def signed(x, digits: int = 2) -> str:
    """A difference with its sign, +0.41 or −0.70; one that rounds to zero is 0.00 (never "+-0.00"
    or "-0.00")."""
    if x is None or not np.isfinite(x):
        return "—"
    if float(f"{x:.{digits}f}") == 0:
        return f"{0:.{digits}f}"
    return f"{x:+,.{digits}f}".replace("-", "−")


def p_value(p) -> str:
    return f"{p:.2g}" if np.isfinite(p) else "—"


def formatted(frame: pd.DataFrame, digits: int = 2, **spec) -> pd.DataFrame:
    """The page's copy of a table: float columns to `digits` decimals, or as `spec` says (a number
    of decimals or a function) per column."""
    out = frame.copy()
    for c in frame.columns:
        f = spec.get(c, digits if frame[c].dtype.kind == "f" else None)
        if f is not None:
            out[c] = frame[c].map(f if callable(f) else lambda v, d=f: num(v, d))
    return out


def listing(values, limit: int = 20, where: str = "seeds.csv") -> str:
    values = [str(s) for s in values]
    more = f", … ({len(values) - limit} more in {where})" if len(values) > limit else ""
    return ", ".join(values[:limit]) + more
