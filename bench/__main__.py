"""Benchmarks, each a ratio against a reference measured in the same run.

1. Pipeline overhead: a whole iris job (submit -> verified live app) against the work it
   wraps, run by hand: train.py and app.py in a temp directory until /health answers.
   Target: at most 2.0x.
2. Slack acks under load: the median time to ack `/train help` while a job trains in the
   same process, against the same with the bot idle. Target: at most 3.0x, and every ack
   well under Slack's 3 s.
3. Job start latency: submit -> first stage started, against one database round trip
   (create + read a job). Target: under 0.5 s absolute, reported as a ratio too.

`python -m bench` prints a table and exits non-zero when a target is missed.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from bench.cases import ack_latency, job_start_latency, pipeline_overhead


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows.append(pipeline_overhead(root / "overhead"))
        rows.append(ack_latency(root / "acks"))
        rows.append(job_start_latency(root / "start"))
    failed = False
    print(f"{'benchmark':<28} {'measured':>10} {'reference':>10} {'ratio':>7} {'target':>8}")
    for row in rows:
        ok = row.ratio <= row.target and row.extra_ok
        failed |= not ok
        print(
            f"{row.name:<28} {row.measured:>9.3f}s {row.reference:>9.3f}s "
            f"{row.ratio:>6.2f}x {'<= ' + str(row.target) + 'x':>8} {'ok' if ok else 'MISSED'}"
        )
        if row.note:
            print(f"    {row.note}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
