"""Regenerate every benchmark table and figure in one command.

Usage::

    python benchmarks/run_all.py            # full tables (committed results)
    python benchmarks/run_all.py --quick    # CI smoke run (< 5 minutes), *_quick.* outputs

Each script runs in its own subprocess (fresh memory accounting, one numba
compilation each, a failure in one does not stop the others) and writes
markdown + JSON (+ PNG) under ``benchmarks/results/``.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("bench_engine.py", "bench_guided.py", "bench_mmsold.py", "bench_path.py",
           "bench_ddpm.py", "bench_oversampling.py", "bench_quality.py", "bench_realdata.py",
           "bench_speed.py", "bench_denoiser.py", "bench_path_denoiser.py", "bench_compile.py",
           "bench_blas.py")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for CI")
    parser.add_argument("--only", nargs="*", default=None, help="run only these scripts")
    args = parser.parse_args(argv)
    summary, started = [], time.perf_counter()
    for script in args.only or SCRIPTS:
        path = HERE / script
        if not path.exists():
            summary.append((script, "missing", 0.0))
            continue
        begin = time.perf_counter()
        cmd = [sys.executable, str(path)] + (["--quick"] if args.quick else [])
        # The scripts import the package from this checkout, installed or not.
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
        code = subprocess.run(cmd, cwd=HERE.parent, env=env).returncode
        summary.append((script, "ok" if code == 0 else f"exit {code}", time.perf_counter() - begin))
    print("\n== benchmark summary ==")
    for script, status, seconds in summary:
        print(f"{script:20s} {status:10s} {seconds:7.1f} s")
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0 if all(s == "ok" for _, s, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
