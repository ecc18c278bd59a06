"""Plot what an event costs the event loop against the size of ``seen``, before and after.

Reads CSV files written by ``bench/scale.py --csv`` (one per release measured) and draws, on
log-log axes, the loop's time per event (``loop_us``) against the number of keys in ``seen``:
one line per store and save mode, a dashed line for each "before" file and a solid one for the
"after" file. Needs matplotlib (``pip install -e '.[bench]'``). ``make bench-plot`` measures the
current checkout and redraws ``docs/figures/scale.png``.

Example:
    python bench/plot_scale.py --before docs/figures/scale-before.csv \\
        --after docs/figures/scale-after.csv --out docs/figures/scale.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # after choosing the backend

COLOURS = {"memory": "tab:blue", "sqlite": "tab:orange", "postgres": "tab:green", "native": "tab:red"}
MARKERS = {"per event": "o", "coalesced": "s"}
SAVES = {"per event": "one save per event", "coalesced": "coalesced saves"}


def read(path: Path) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """The CSV's figures as ``(store, saves) -> [(seen keys, loop µs per event), ...]``."""
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    with path.open(newline="") as source:
        for row in csv.DictReader(source):
            series.setdefault((row["store"], row["saves"]), []).append(
                (int(row["seen_keys"]), float(row["loop_us"]))
            )
    return {label: sorted(points) for label, points in series.items()}


def plot(before: Path, after: Path, out: Path, title: str) -> None:
    """Draw both files' series on one figure and write it to ``out`` (PNG)."""
    figure, axes = plt.subplots(figsize=(7.5, 4.8), dpi=100)
    for path, style, when in ((before, "--", "before"), (after, "-", "after")):
        for (store, saves), points in sorted(read(path).items()):
            keys, micros = zip(*points, strict=True)
            axes.plot(
                keys,
                micros,
                linestyle=style,
                marker=MARKERS.get(saves, "^"),
                color=COLOURS.get(store, "tab:gray"),
                alpha=0.55 if when == "before" else 1.0,
                label=f"{when}: {store}, {SAVES.get(saves, saves)}",
            )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("keys in seen")
    axes.set_ylabel("event loop time per event (µs)")
    axes.set_title(title)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(out, format="png")
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, required=True, help="CSV of the release before")
    parser.add_argument("--after", type=Path, required=True, help="CSV of the release after")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument(
        "--title", default="What an event costs the event loop, by the size of seen (bench/scale.py)"
    )
    args = parser.parse_args(argv)
    plot(args.before, args.after, args.out, args.title)


if __name__ == "__main__":
    main()
