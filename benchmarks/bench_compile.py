"""What pynndescent's numba compilation costs, and what the default index costs instead.

1. Compile cost: two fresh Python processes share a new, empty numba cache
   folder (``NUMBA_CACHE_DIR``); each imports pynndescent and runs a first
   ``PatternIndex("nndescent")`` fit and query on 2000 x 16 points.  The first
   process compiles cold; the second finds the cache the first one wrote.
2. Break-even: at d = 16 and N in {1e5, 3e5} (quick: {2e4}), the build time of
   the pynndescent graph and the time of one batch of 1000 queries for their 50
   nearest patterns (what one step of an MM-SOLD swarm asks), against exact
   brute force (``PatternIndex("brute")``, no build).  The number of query
   batches after which pynndescent pays for its warm first-fit overhead and
   its build is (warm overhead + build) / (brute batch - nndescent batch).
   The same for the k-means cells (``PatternIndex("cells")``, what
   ``algorithm="auto"`` uses beyond 200,000 patterns), with the recall of both
   approximate indexes against brute force.
3. A fresh process builds ``PatternIndex("auto")`` on 300,000 x 16 points
   (quick: 210,000) and answers one batch: its first indexed fit, timed, and
   whether numba was loaded at all.

Writes ``benchmarks/results/compile{,_quick}.md`` and ``.json``.
"""

import json
import os
import subprocess
import sys
import tempfile

import _common
import numpy as np

from sklearn_diffsample._neighbors import PatternIndex

CHILD = """
import json, time
import numpy as np
start = time.perf_counter()
import pynndescent  # noqa: F401  (the import itself loads or compiles numba code)
imported = time.perf_counter()
from sklearn_diffsample._neighbors import PatternIndex
X = np.random.default_rng(0).normal(size=(2000, 16))
PatternIndex("nndescent", 0).fit(X).kneighbors(X[:10], 5)
done = time.perf_counter()
print(json.dumps({"import_s": imported - start, "first_fit_s": done - imported}))
"""
CHILD_AUTO = """
import json, sys, time
import numpy as np
from sklearn_diffsample._neighbors import PatternIndex
X = np.random.default_rng(0).normal(size=({n}, 16))
start = time.perf_counter()
index = PatternIndex("auto", 0).fit(X)
index.kneighbors(X[:1000] + 0.1, 50)
print(json.dumps({{"algorithm": index.algorithm_, "first_fit_s": time.perf_counter() - start,
                  "numba_loaded": "numba" in sys.modules}}))
"""
D, K, QUERIES = 16, 50, 1000


def compile_cost():
    with tempfile.TemporaryDirectory() as cache:
        env = dict(_child_env(), NUMBA_CACHE_DIR=cache)
        runs = {}
        for name in ("cold", "warm"):
            out = subprocess.run([sys.executable, "-c", CHILD], env=env, check=True,
                                 capture_output=True, text=True).stdout
            runs[name] = json.loads(out.strip().splitlines()[-1])
            print(name, runs[name], flush=True)
    return runs


def _child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_common.ROOT), env.get("PYTHONPATH")]))
    return env


def auto_first_fit(n):
    out = subprocess.run([sys.executable, "-c", CHILD_AUTO.format(n=n)], env=_child_env(),
                         check=True, capture_output=True, text=True).stdout
    run = dict(json.loads(out.strip().splitlines()[-1]), n=n)
    print("auto", run, flush=True)
    return run


def _recall(ind, true_ind):
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ind, true_ind)]))


def break_even(n, warm_overhead):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, D))
    Q = X[rng.integers(0, n, QUERIES)] + 0.1 * rng.normal(size=(QUERIES, D))
    build_s, nnd = _common.timed(lambda: PatternIndex("nndescent", 0).fit(X))
    nnd.kneighbors(Q[:10], K)  # first query prepares the search graph
    nnd_s, _ = _common.timed(lambda: nnd.kneighbors(Q, K))
    cells_build_s, cells = _common.timed(lambda: PatternIndex("cells", 0).fit(X))
    cells_s, (_, cells_ind) = _common.timed(lambda: cells.kneighbors(Q, K))
    brute = PatternIndex("brute").fit(X)
    brute_s, (_, true_ind) = _common.timed(lambda: brute.kneighbors(Q, K))
    gain = brute_s - nnd_s
    batches = (warm_overhead + build_s) / gain if gain > 0 else float("inf")
    cells_gain = brute_s - cells_s
    row = dict(n=n, build_s=build_s, nndescent_batch_s=nnd_s, brute_batch_s=brute_s,
               break_even_batches=batches,
               nndescent_recall=_recall(nnd.kneighbors(Q, K)[1], true_ind),
               cells_build_s=cells_build_s, cells_batch_s=cells_s,
               cells_break_even_batches=(cells_build_s / cells_gain if cells_gain > 0
                                         else float("inf")),
               cells_recall=_recall(cells_ind, true_ind))
    print(row, flush=True)
    return row


def markdown(runs, rows, auto, quick, started, info):
    lines = _common.header("Neighbour indexes: pynndescent's compile cost, the default's cost",
                           "bench_compile.py", quick, started, info)
    lines += ["Two fresh processes on one new numba cache folder; each imports pynndescent "
              "and runs a first nndescent fit and query on 2000 x 16 points.", "",
              "| process | import s | first fit + query s |", "|---|---|---|"]
    for name, r in runs.items():
        lines.append(f"| {name} cache | {r['import_s']:.1f} | {r['first_fit_s']:.1f} |")
    lines += ["", f"Break-even at d = {D}: one batch is {QUERIES} queries for their {K} "
              "nearest patterns; pynndescent pays after (warm first-fit overhead + build) / "
              "(brute batch - nndescent batch) batches.", "",
              "| N | nndescent build s | nndescent batch s | brute batch s | break-even batches |",
              "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['build_s']:.1f} | {r['nndescent_batch_s']:.3f} | "
                     f"{r['brute_batch_s']:.3f} | {r['break_even_batches']:.0f} |")
    lines += ["", "The k-means cells (`algorithm=\"auto\"` beyond 200,000 patterns) on the same "
              "points: no compilation; they pay after build / (brute batch - cells batch) "
              "batches. Recall: the share of the true 50 nearest patterns returned.", "",
              "| N | cells build s | cells batch s | break-even batches | cells recall | "
              "nndescent recall |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['cells_build_s']:.1f} | {r['cells_batch_s']:.3f} | "
                     f"{r['cells_break_even_batches']:.1f} | {r['cells_recall']:.3f} | "
                     f"{r['nndescent_recall']:.3f} |")
    lines += ["", f"A fresh process, first indexed fit with `algorithm=\"auto\"` on "
              f"{auto['n']:,} x {D} points and one batch of {QUERIES} queries: "
              f"{auto['first_fit_s']:.1f} s with the `{auto['algorithm']}` backend; "
              f"numba loaded: {'yes' if auto['numba_loaded'] else 'no'} (nothing compiled)."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args, started, info = _common.begin(__doc__, argv)
    runs = compile_cost()
    warm = runs["warm"]["import_s"] + runs["warm"]["first_fit_s"]
    with _common.one_blas_thread():
        # Load the compiled code here too, so that the builds below are builds.
        tiny = np.random.default_rng(0).normal(size=(500, D))
        PatternIndex("nndescent", 0).fit(tiny).kneighbors(tiny[:5], 5)
        rows = [break_even(n, warm) for n in ((20_000,) if args.quick else (100_000, 300_000))]
    auto = auto_first_fit(210_000 if args.quick else 300_000)
    text = markdown(runs, rows, auto, args.quick, started, info)
    path = _common.write("compile", args.quick, text,
                         dict(machine=info, runs=runs, rows=rows, auto=auto))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
