"""Regenerate tasks/people.csv, the small synthetic census-like table behind people.toml.

    python tasks/make_people.py            # writes tasks/people.csv next to this file

Deterministic (numpy seed 20240521): running it again reproduces the file byte for byte.
The labels depend on the features plus noise, so a small MLP clearly beats chance:
income_class (<=50K / >50K) from age, education, occupation, hours and capital gain;
marital_status (4 classes) mostly from age; years_employed from age and education.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

SEED = 20240521
N = 3000

EDUCATION = ["11th", "HS-grad", "Some-college", "Bachelors", "Masters", "Doctorate"]
EDU_P = [0.08, 0.32, 0.24, 0.22, 0.11, 0.03]
EDU_YEARS = [11, 12, 14, 16, 18, 21]  # years of schooling -> age at first job
EDU_INCOME = [-1.2, -0.6, -0.2, 0.6, 1.0, 1.4]
OCCUPATIONS = [
    "Adm-clerical",
    "Craft-repair",
    "Exec-managerial",
    "Other-service",
    "Prof-specialty",
    "Sales",
    "Tech-support",
]
OCC_INCOME = [-0.3, 0.0, 1.1, -1.0, 0.8, 0.2, 0.3]
OCC_HOURS = [38, 42, 46, 32, 43, 40, 40]
MARITAL = ["Divorced", "Married", "Never-married", "Widowed"]


def _softmax_choice(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random(len(p))[:, None]
    return (u > np.cumsum(p, axis=1)).sum(axis=1).clip(0, p.shape[1] - 1)


def make(n: int = N, seed: int = SEED) -> list[dict]:
    rng = np.random.default_rng(seed)
    age = np.clip(np.round(rng.gamma(3.2, 7.0, n) + 17), 18, 85).astype(int)
    edu = rng.choice(len(EDUCATION), size=n, p=EDU_P)
    # occupation depends on education: degree holders lean to managerial / professional
    occ_logits = np.zeros((n, len(OCCUPATIONS)))
    degree = (edu >= 3).astype(float)
    occ_logits[:, 2] += 1.0 * degree
    occ_logits[:, 4] += 1.6 * degree
    occ_logits[:, 6] += 0.5 * degree
    occ_logits[:, 1] += 1.0 * (1 - degree)
    occ_logits[:, 3] += 0.9 * (1 - degree)
    occ = _softmax_choice(rng, occ_logits)
    hours = np.clip(np.round(rng.normal(np.take(OCC_HOURS, occ), 8.0)), 5, 90).astype(float)
    hours[rng.random(n) < 0.02] = np.nan  # a few unanswered
    has_gain = rng.random(n) < 0.05 + 0.10 * degree
    gain = np.where(has_gain, np.round(np.exp(rng.normal(8.5, 1.0, n)) / 10) * 10, 0).astype(int)

    # marital status: mostly a function of age
    a = (age - 18) / 10.0
    m_logits = np.stack(
        [
            -2.2 + 0.70 * a - 0.06 * a**2,  # divorced
            -0.6 + 0.90 * a - 0.08 * a**2,  # married
            2.0 - 1.10 * a,  # never married
            -5.0 + 1.00 * a,  # widowed
        ],
        axis=1,
    )
    marital = _softmax_choice(rng, m_logits)
    married = (marital == 1).astype(float)

    start = np.take(EDU_YEARS, edu) + 6 + rng.integers(0, 3, n)
    career = np.maximum(age - start, 0)
    frac = np.clip(rng.normal(0.75, 0.12, n), 0.2, 1.0)
    years = np.round(np.maximum(career * frac + rng.normal(0, 1.0, n), 0), 1)

    h = np.nan_to_num(hours, nan=40.0)
    z = (
        -1.6
        + 0.05 * (np.minimum(age, 60) - 38)
        + np.take(EDU_INCOME, edu)
        + np.take(OCC_INCOME, occ)
        + 0.04 * (h - 40)
        + 2.2 * (gain > 5000)
        + 0.5 * married
        + rng.logistic(0, 0.7, n)
    )
    income = np.where(z > 0, ">50K", "<=50K")

    rows = []
    for i in range(n):
        rows.append(
            {
                "age": int(age[i]),
                "education": EDUCATION[edu[i]],
                "hours_per_week": "" if np.isnan(hours[i]) else int(hours[i]),
                "occupation": OCCUPATIONS[occ[i]],
                "capital_gain": int(gain[i]),
                "income_class": income[i],
                "marital_status": MARITAL[marital[i]],
                "years_employed": f"{years[i]:.1f}",
            }
        )
    return rows


def main(out: str | None = None) -> Path:
    path = Path(out) if out else Path(__file__).with_name("people.csv")
    rows = make()
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return path


if __name__ == "__main__":
    print(main(sys.argv[1] if len(sys.argv) > 1 else None))
