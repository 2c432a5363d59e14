"""Chunking, seeding and the joblib driver shared by every sampler.

The contract: work is cut into chunks whose sizes depend only on
(n_samples, batch_size); chunk i draws from ``default_rng(root.spawn(n)[i])``
with ``root`` made from the caller's ``random_state``.  Which worker runs a
chunk, and in which order, cannot change a single bit of the result.
"""

import os
import sys
import threading
import time
from contextlib import contextmanager
from functools import partial

import numpy as np
from sklearn.utils.parallel import Parallel, delayed
from threadpoolctl import ThreadpoolController

try:  # where recent threadpoolctl keeps its controlling-thread rule
    from threadpoolctl import OpenBLASController
except ImportError:  # pragma: no cover - older threadpoolctl
    OpenBLASController = None

__all__ = [
    "Progress",
    "fit_phase",
    "HOT_LOOP_BLAS_THREADS",
    "blas_thread_limit",
    "hot_loop_blas",
    "PROCESS_MIN_TERMS",
    "preferred_backend",
    "chunk_sizes",
    "chunk_slices",
    "run_chunks",
    "seed_sequence",
]


def seed_sequence(random_state):
    """A root ``SeedSequence`` from an int, RandomState, Generator or None.

    None draws fresh OS entropy.  A RandomState or Generator is advanced by one
    draw, so repeated calls with the same object give different streams, as
    scikit-learn's ``check_random_state`` semantics lead users to expect.  A
    SeedSequence is a seed value, like an int: it is copied, never advanced.
    """
    if random_state is None:
        return np.random.SeedSequence()
    if isinstance(random_state, np.random.SeedSequence):
        # A copy: spawning from the caller's object would advance it, and the
        # same SeedSequence must give the same draws, as the same int does.
        return np.random.SeedSequence(
            random_state.entropy, spawn_key=random_state.spawn_key,
            pool_size=random_state.pool_size,
            n_children_spawned=random_state.n_children_spawned)
    if isinstance(random_state, (int, np.integer)):
        if random_state < 0:
            raise ValueError(f"random_state must be >= 0, got {random_state}.")
        return np.random.SeedSequence(int(random_state))
    if isinstance(random_state, np.random.RandomState):
        return np.random.SeedSequence(random_state.randint(0, 2**32, size=4).tolist())
    if isinstance(random_state, np.random.Generator):
        return np.random.SeedSequence(random_state.integers(0, 2**63, size=4).tolist())
    raise ValueError(
        "random_state must be None, an int, a numpy RandomState or a numpy "
        f"Generator, got {type(random_state).__name__}."
    )


def chunk_sizes(n_samples, batch_size, min_size=1):
    """Fixed chunk sizes: full batches, the remainder folded in if too small.

    A remainder below ``min_size`` joins the last full batch, so every chunk has
    at least ``min_size`` items whenever ``n_samples >= min_size``.
    """
    n_samples, batch_size = int(n_samples), int(batch_size)
    if n_samples <= 0:
        return []
    sizes = [batch_size] * (n_samples // batch_size)
    rest = n_samples - batch_size * len(sizes)
    if rest:
        if sizes and rest < min_size:
            sizes[-1] += rest
        else:
            sizes.append(rest)
    return sizes


def chunk_slices(n_samples, batch_size, min_size=1):
    """The output rows of each chunk of :func:`chunk_sizes`, as slices."""
    bounds = np.cumsum([0, *chunk_sizes(n_samples, batch_size, min_size)])
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


class Progress:
    """A thread-safe progress bar over steps of all chunks, on stderr.

    Uses tqdm when installed, a plain updating line otherwise.  In a process
    worker it unpickles as a silent bar; the driver then credits the chunk's
    steps when its result arrives.
    """

    def __init__(self, total, desc="sampling", verbose=0):
        self.total = int(total)
        self.verbose = verbose
        self._done = {}
        self._lock = threading.Lock()
        self._bar = None
        self._count = 0
        # A terminal redraws one line 50 times; a log file gets a whole line
        # at each tenth instead of one ever-growing line of carriage returns.
        self._interactive = bool(verbose) and _is_terminal(sys.stderr)
        if verbose:
            try:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=self.total, desc=desc, file=sys.stderr)
            except ImportError:
                self._desc = desc

    def step(self, chunk, n=1):
        if not self.verbose:
            return
        with self._lock:
            self._done[chunk] = self._done.get(chunk, 0) + n
            self._advance(n)

    def chunk_done(self, chunk, steps):
        if not self.verbose:
            return
        with self._lock:
            missing = steps - self._done.get(chunk, 0)
            self._done[chunk] = steps
            self._advance(missing)

    def _advance(self, n):
        if n <= 0:
            return
        before, self._count = self._count, self._count + n
        if self._bar is not None:
            self._bar.update(n)
            return
        every = max(self.total // (50 if self._interactive else 10), 1)
        if self._count == self.total or self._count // every > before // every:
            line = f"{self._desc}: {self._count}/{self.total}"
            sys.stderr.write(f"\r{line}" if self._interactive else f"{line}\n")
            sys.stderr.flush()

    def close(self):
        if self._bar is not None:
            self._bar.close()
        elif self._interactive:
            sys.stderr.write("\n")

    def __reduce__(self):
        return (Progress, (0, "", 0))


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


@contextmanager
def fit_phase(estimator, name):
    """With the estimator's ``verbose``, one stderr line when a phase of its
    fit ends: the phase's name and seconds (a fit with no steps to count
    still shows where its time goes)."""
    start = time.perf_counter()
    yield
    if estimator.verbose:
        sys.stderr.write(f"{type(estimator).__name__}.fit: {name}, "
                         f"{time.perf_counter() - start:.2f} s\n")


class _BlasLimiter:
    """Process-wide BLAS thread limits that concurrent callers can share.

    threadpoolctl's limits are global to the process.  Entered and left from
    several threads, independent ``threadpool_limits`` blocks restore each
    other's values in the wrong order and leave the process limited for good;
    here the first caller in saves the original limits and the last one out
    restores them.  A caller asking for fewer threads than the current limit
    lowers it; nobody raises it while others are inside.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._limit = None
        self._original = None
        self._controller = None

    def _set(self, n_threads):
        # One scan of the loaded libraries per process: a scan takes ~6 ms,
        # as much as a small fit's kernel sums (a GridSearchCV fit limits twice).
        # A BLAS library first loaded after the first call is left unlimited.
        if self._controller is None:
            self._controller = ThreadpoolController()
        return self._controller.limit(limits=n_threads)

    @contextmanager
    def limit(self, n_threads):
        if n_threads is None:
            yield
            return
        with self._lock:
            if self._depth == 0:
                self._original = self._set(n_threads)
                self._limit = n_threads
            elif n_threads < self._limit:
                self._set(n_threads)
                self._limit = n_threads
            self._depth += 1
            _release_openblas()
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._original.restore_original_limits()
                    self._original = self._limit = None
                    _release_openblas()


def _release_openblas():
    """Let the next thread that changes OpenBLAS's limit do so.

    Recent threadpoolctl lets only one "controlling" thread change
    OpenBLAS's process-wide pool and silently ignores the others until the
    controller leaves a ``with threadpool_limits`` block.  Here the first
    caller in and the last one out may be different threads, and every change
    happens under the limiter's lock, so control is handed back after each.
    """
    release = getattr(OpenBLASController, "clear_controlling_thread", None)  # None-safe
    if release is not None:
        release(force=True)


_BLAS_LIMITER = _BlasLimiter()


def blas_thread_limit(n_threads):
    """Context limiting BLAS to ``n_threads`` (None: no limit), safe across threads."""
    return _BLAS_LIMITER.limit(n_threads)


# BLAS threads inside the package's hot loops.  Their products are blocks of at
# most a few hundred queries, which a second BLAS thread barely speeds up on an
# idle machine and slows down several times on a busy one, where its spinning
# thread competes for a core (benchmarks/results/blas.md); the parallelism is
# n_jobs, over chunks.
HOT_LOOP_BLAS_THREADS = 1


def hot_loop_blas():
    """Context: BLAS limited to :data:`HOT_LOOP_BLAS_THREADS`, scoped and thread-safe."""
    return blas_thread_limit(HOT_LOOP_BLAS_THREADS)


# Two threads share a sampler's many small array operations (gathers, log-sum-
# exp merges, swarm moments) less well than two processes: with n_jobs=2,
# MM-SOLD with exact sums on N = 5000, d = 16 sampled 1.70x faster than one
# worker on threads and 1.96x on processes; the guided sampler's clustered
# denoiser at N = 1e5, d = 16 (10,000 samples) 1.38x and 1.86x (best of
# several calls, measured).  But processes take about 2 s to start (a first
# MM-SOLD sample(1000) on iris: 2.2 s against 0.14 s), so only calls of at
# least this many pattern terms (about 2.5 s on one core at d = 16: 2.5-4.7 ns
# a summed pattern, exact or clustered) prefer them.
PROCESS_MIN_TERMS = 1e9


def preferred_backend(pattern_terms):
    """joblib's ``prefer`` hint for a call that sums ``pattern_terms`` pattern
    terms in all: "processes" from :data:`PROCESS_MIN_TERMS` on, else "threads"."""
    return "processes" if pattern_terms >= PROCESS_MIN_TERMS else "threads"


def _run_chunk(func, index, chunk, seed, progress, parent_pid, inner_threads):
    rng = np.random.default_rng(seed)
    report = partial(progress.step, index)
    if os.getpid() == parent_pid:
        # Thread workers share the BLAS limit set once by the driver.
        return func(chunk, rng, report)
    with blas_thread_limit(inner_threads):
        return func(chunk, rng, report)


def run_chunks(func, chunks, seed, *, n_jobs=None, verbose=0, steps_per_chunk=1,
               desc="sampling", prefer="threads"):
    """Run ``func(chunk, rng, report)`` on each chunk, in parallel, in order.

    Parameters
    ----------
    func : callable
        ``func(chunk, rng, report)``: ``chunk`` is the item of ``chunks``,
        ``rng`` the chunk's Generator, and ``report(n)`` advances the progress
        bar by n steps.
    chunks : list
        One work description per chunk, handed to ``func`` as is: a chunk size
        (see :func:`chunk_sizes`), or the slice of output rows the chunk
        fills when per-row inputs (class labels, say) must follow it.
    seed : numpy.random.SeedSequence
        Root seed; chunk i uses its i-th spawned child.
    n_jobs : int or None
        joblib workers; None defers to the active ``parallel_config``.
    verbose : int
        >= 1 shows a progress bar over ``len(chunks) * steps_per_chunk`` steps.
    prefer : {"threads", "processes"}, default="threads"
        joblib's soft hint when no backend is configured: threads share the
        fitted patterns; processes suit chunks whose many small array
        operations hold the GIL (a ``parallel_config`` backend overrides it).

    Returns
    -------
    list
        ``func``'s results, in chunk order.
    """
    children = seed.spawn(len(chunks))
    inner = HOT_LOOP_BLAS_THREADS
    progress = Progress(len(chunks) * steps_per_chunk, desc, verbose)
    tasks = [(func, i, chunk, children[i], progress, os.getpid(), inner)
             for i, chunk in enumerate(chunks)]
    results = []
    try:
        with blas_thread_limit(inner):
            if len(tasks) == 1:
                # A worker could not speed one chunk up, and a process would
                # cost ~10 ms to start the call (measured): it runs here.
                outcomes = [_run_chunk(*tasks[0])]
            else:
                outcomes = Parallel(n_jobs=n_jobs, prefer=prefer,
                                    return_as="generator" if verbose else "list")(
                    delayed(_run_chunk)(*task) for task in tasks)
            for i, result in enumerate(outcomes):
                progress.chunk_done(i, steps_per_chunk)
                results.append(result)
    finally:
        progress.close()
    return results

