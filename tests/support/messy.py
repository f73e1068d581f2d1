"""A deliberately messy CSV: odd headers, gaps, strings, an ID, dates, an imbalanced Yes/No."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def write_messy_csv(path: Path, rows: int = 400, seed: int = 7) -> Path:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, rows)
    income = rng.normal(4000, 1200, rows).round(2)
    plan = rng.choice(["Basic", "Plus", "Premium"], rows, p=[0.5, 0.3, 0.2])
    calls = rng.poisson(2, rows)
    signup = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1500, rows), unit="D")
    risk = -0.06 * tenure + 0.8 * calls + (plan == "Basic") * 1.0 - 1.2
    churned = np.where(risk + rng.normal(0, 0.6, rows) > 0.9, "Yes", "No")
    frame = pd.DataFrame(
        {
            "Customer ID": [f"CUST-{n:05d}" for n in range(rows)],
            "  Tenure (months) ": tenure.astype(float),
            "Monthly Income ($)": income,
            "Plan Type": plan,
            "# Support Calls": calls,
            "Signup Date": signup.strftime("%Y-%m-%d"),
            "Churned?": churned,
        }
    )
    for column, share in (
        ("  Tenure (months) ", 0.05),
        ("Monthly Income ($)", 0.08),
        ("Plan Type", 0.06),
    ):
        frame.loc[rng.random(rows) < share, column] = np.nan
    frame.to_csv(path, index=False)
    return path


# Headers as spreadsheets export them: stray spaces, shouting, an id column users keep.
ODD_HEADERS = {
    "id": " Customer ID",
    "tenure": "Tenure ",
    "plan": "PLAN",
    "income": "  Monthly Income ",
    "calls": "Support Calls",
    "target": " Churned ",
}


def write_odd_headers_csv(path: Path, rows: int = 240, seed: int = 11) -> Path:
    """A churn CSV whose header row has the quirks in ODD_HEADERS; the target is " Churned "."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, rows)
    plan = rng.choice(["Basic", "Plus", "Premium"], rows, p=[0.5, 0.3, 0.2])
    calls = rng.poisson(2, rows)
    risk = -0.06 * tenure + 0.8 * calls + (plan == "Basic") * 1.0 - 0.8
    frame = pd.DataFrame(
        {
            ODD_HEADERS["id"]: [f"CUST-{n:05d}" for n in range(rows)],
            ODD_HEADERS["tenure"]: tenure,
            ODD_HEADERS["plan"]: plan,
            ODD_HEADERS["income"]: rng.normal(4000, 1200, rows).round(2),
            ODD_HEADERS["calls"]: calls,
            ODD_HEADERS["target"]: np.where(risk + rng.normal(0, 0.6, rows) > 0, "Yes", "No"),
        }
    )
    frame.to_csv(path, index=False)
    return path
