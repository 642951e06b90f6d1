"""Regenerate tasks/fair.csv, the real survey table behind fair.toml, from statsmodels' copy.

    python tasks/make_fair.py                      # from an installed statsmodels
    python tasks/make_fair.py PATH                 # from a fair.csv, or a folder holding
                                                   # statsmodels/datasets/fair/fair.csv
                                                   # (e.g. an unpacked `pip download statsmodels` wheel)
    python tasks/make_fair.py PATH --out OUT.csv   # somewhere else than tasks/fair.csv

Source: the "Affairs dataset" shipped by statsmodels as
`statsmodels/datasets/fair/fair.csv` (6366 rows; statsmodels' own copy has sha256
fd5f3f094a34fc35ca346a14c359e046ed27843038d6921efcd50a7ab21f6af0).
Citation: Fair, Ray. 1978. "A Theory of Extramarital Affairs," Journal of Political
Economy, February, 45-61. The data is available at
http://fairmodel.econ.yale.edu/rayfair/pdf/2011b.htm
Licence: statsmodels states the data is "Included with permission of the author."
statsmodels is not a dependency of nasmt: it is only read here, never imported.

What is written (every row of the source, in its order; no randomness, so running it
again reproduces the file byte for byte):
    features  age (years, 17.5 ... 42), educ (years of schooling: 9, 12, 14, 16, 17, 20),
              occupation, occupation_husb (the source's codes 1-6 as category labels
              "occ1" ... "occ6": 1 student, 2 farming / semi- or unskilled, 3 white collar,
              4 teacher / nurse / artist / technician, 5 managerial, 6 professional with
              an advanced degree)
    targets   affair         "yes" if the source's `affairs` (time spent in affairs) > 0, else "no"
              rate_marriage  self-rated marriage, 1 (very poor) ... 5 (very good)
              religious      1 (not) ... 4 (strongly)
              yrs_married    years married (interval midpoints: 0.5 ... 23)
              children       number of children (0 ... 5.5, the source's top interval)
The source's `affairs` column itself is not kept (the binary target is derived from it).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import sys
from pathlib import Path

N_ROWS = 6366
SOURCE_SHA256 = "fd5f3f094a34fc35ca346a14c359e046ed27843038d6921efcd50a7ab21f6af0"
IN_PACKAGE = Path("datasets") / "fair" / "fair.csv"  # inside the statsmodels package folder
SOURCE_COLUMNS = [
    "rate_marriage", "age", "yrs_married", "children", "religious", "educ", "occupation", "occupation_husb", "affairs",
]
COLUMNS = [
    "age", "educ", "occupation", "occupation_husb", "affair", "rate_marriage", "religious", "yrs_married", "children",
]


def find_source(path: str | Path | None = None) -> Path:
    """statsmodels' fair.csv: `path` itself, or under a folder holding the statsmodels
    package (or the package folder itself); without `path`, the installed statsmodels'."""
    if path is None:
        spec = importlib.util.find_spec("statsmodels")  # locates the package without importing it
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("statsmodels is not installed: give the path of its fair.csv "
                             "(e.g. from an unpacked `pip download statsmodels --no-deps` wheel)")
        candidates = [Path(p) / IN_PACKAGE for p in spec.submodule_search_locations]
    else:
        p = Path(path)
        candidates = [p] if p.is_file() else [p / "statsmodels" / IN_PACKAGE, p / IN_PACKAGE, p / "fair.csv"]
    for c in candidates:
        if c.is_file():
            return c
    raise SystemExit(f"no fair.csv found at {', '.join(map(str, candidates))}")


def _num(text: str) -> str:
    """A source number as written here: integral values without a decimal point."""
    v = float(text)
    return str(int(v)) if v.is_integer() else repr(v)


def make(source: Path) -> list[dict]:
    with open(source, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != SOURCE_COLUMNS:
            raise SystemExit(f"{source}: unexpected columns {reader.fieldnames} (expected {SOURCE_COLUMNS})")
        src = list(reader)
    if len(src) != N_ROWS:
        raise SystemExit(f"{source}: {len(src)} rows (expected {N_ROWS})")
    return [
        {
            "age": _num(r["age"]),
            "educ": _num(r["educ"]),
            "occupation": f"occ{_num(r['occupation'])}",
            "occupation_husb": f"occ{_num(r['occupation_husb'])}",
            "affair": "yes" if float(r["affairs"]) > 0 else "no",
            "rate_marriage": _num(r["rate_marriage"]),
            "religious": _num(r["religious"]),
            "yrs_married": _num(r["yrs_married"]),
            "children": _num(r["children"]),
        }
        for r in src
    ]


def main(source: str | Path | None = None, out: str | Path | None = None) -> Path:
    src = find_source(source)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    if digest != SOURCE_SHA256:
        print(f"note: {src} differs from the copy fair.csv was made from (sha256 {digest})", file=sys.stderr)
    rows = make(src)
    path = Path(out) if out else Path(__file__).with_name("fair.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", nargs="?", help="statsmodels' fair.csv, or a folder holding statsmodels/ "
                                              "(default: the installed statsmodels)")
    ap.add_argument("--out", help="output file (default: tasks/fair.csv next to this script)")
    a = ap.parse_args()
    print(main(a.source, a.out))
