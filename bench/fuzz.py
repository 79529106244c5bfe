"""The deep schema-fuzzing run: what CI does in tests/reliability/test_fuzz.py, with many more
examples per operation, a fresh random seed, the coverage phase (boundary and invalid values for
every parameter and body field) and every role's API key.

    .venv/bin/python bench/fuzz.py                         # 200 examples, all roles, coverage
    .venv/bin/python bench/fuzz.py --examples 1000 --roles admin --seed 42
    .venv/bin/python bench/fuzz.py --no-coverage --examples 50 --out /tmp/fuzz.json

Database: OMS_TEST_DATABASE_URL if set (its schema is dropped and re-created, as for the
tests), else a throwaway embedded PostgreSQL per run. A failure prints schemathesis' report
with a curl line to reproduce it and the seed to re-run with. The summary lists, per role, how
many responses of each status every operation gave, and the operations that never answered
2xx (the fuzzer could not get past validation or lookups there).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("admin", "storefront", "storefront_web", "fulfillment")


def run(role: str, *, examples: int, seed: int, coverage: bool, verbose: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="oms-fuzz-") as tmp:
        report = Path(tmp) / "seen.json"
        env = os.environ | {
            "OMS_FUZZ_EXAMPLES": str(examples),
            "OMS_FUZZ_SEED": str(seed),
            "OMS_FUZZ_ROLE": role,
            "OMS_FUZZ_COVERAGE": "1" if coverage else "0",
            "OMS_FUZZ_REPORT": str(report),
        }
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "tests/reliability/test_fuzz.py",
            "-q",
            "-p",
            "no:cacheprovider",
            "--tb=short" if verbose else "--tb=line",
        ]
        started = time.monotonic()
        result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        elapsed = time.monotonic() - started
        seen = json.loads(report.read_text()) if report.exists() else []
    return {
        "role": role,
        "seed": seed,
        "examples": examples,
        "coverage": coverage,
        "passed": result.returncode == 0,
        "seconds": round(elapsed, 1),
        "responses": seen,
        "output": result.stdout[-20_000:] + result.stderr[-5_000:],
    }


def summarize(outcome: dict[str, object]) -> str:
    rows = outcome["responses"]
    assert isinstance(rows, list)
    per_op: dict[str, dict[int, int]] = defaultdict(dict)
    for row in rows:
        per_op[row["operation"]][row["status"]] = row["count"]
    total = sum(row["count"] for row in rows)
    never_ok = sorted(op for op, st in per_op.items() if not any(200 <= s < 300 for s in st))
    lines = [
        f"role {outcome['role']}: {'PASSED' if outcome['passed'] else 'FAILED'} "
        f"({total} responses, {len(per_op)} operations, {outcome['seconds']} s, "
        f"seed {outcome['seed']})"
    ]
    statuses: dict[int, int] = defaultdict(int)
    for st in per_op.values():
        for s, n in st.items():
            statuses[s] += n
    lines.append("  statuses: " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
    if never_ok:
        lines.append(f"  never 2xx ({len(never_ok)}): " + "; ".join(never_ok))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=200, help="per operation and role")
    parser.add_argument("--seed", type=int, help="default: random (printed)")
    parser.add_argument("--roles", default=",".join(ROLES), help="comma-separated")
    parser.add_argument("--no-coverage", action="store_true", help="skip the coverage phase")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "fuzz.json"))
    parser.add_argument("-v", "--verbose", action="store_true", help="full failure reports")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    outcomes = []
    for role in args.roles.split(","):
        print(f"fuzzing as {role}: {args.examples} examples per operation, seed {seed}", flush=True)
        outcome = run(
            role,
            examples=args.examples,
            seed=seed,
            coverage=not args.no_coverage,
            verbose=args.verbose,
        )
        outcomes.append(outcome)
        print(summarize(outcome), flush=True)
        if not outcome["passed"]:
            print(outcome["output"], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps([{k: v for k, v in o.items() if k != "output"} for o in outcomes], indent=1)
        + "\n"
    )
    print(f"wrote {out}")
    failed = [o["role"] for o in outcomes if not o["passed"]]
    if failed:
        print(f"FAILED for {', '.join(map(str, failed))}; re-run with --seed {seed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
