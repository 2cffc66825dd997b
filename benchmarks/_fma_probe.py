"""The machine's float32 FMA peak, measured: a tiny C program of independent vector FMAs.

The program keeps 12 accumulators of one native vector each in registers (enough independent
chains to cover the FMA latency on current x86 cores) and runs ``a = a * m + c`` on each, with
no memory traffic; compiled with ``-O2 -march=native``, so ``a * m + c`` is one FMA. The vector
is as wide as the CPU's widest float registers: 16 floats with AVX-512, 8 with AVX/AVX2, 4
otherwise. (A fixed 16-float vector is two ymm registers on AVX2: 12 accumulators then need
24 of its 16 registers, spill to memory, and measured ~8 GFLOP/s on a core whose peak is ~10x
that.) FLOPs = 2 per lane per FMA. Each thread count runs in
OpenMP threads; the best of 5 runs is kept. Nothing else in moelab depends on this.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Iterable, Optional

__all__ = ["PROBE_SOURCE", "compile_probe", "fma_peak"]

PROBE_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <omp.h>
#if defined(__AVX512F__)
#define LANES 16
#elif defined(__AVX__)
#define LANES 8
#else
#define LANES 4
#endif
typedef float vec __attribute__((vector_size(4 * LANES)));
#define STEP(X) X = X * m + c;
int main(int argc, char** argv) {
    long iters = atol(argv[1]);
    int threads = atoi(argv[2]);
    double best = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
        double t0 = omp_get_wtime();
        #pragma omp parallel num_threads(threads)
        {
            vec m = {}, c = {};
            m += 0.999999f;
            c += 1e-7f;
            vec a0 = m, a1 = m + c, a2 = m + 2 * c, a3 = m + 3 * c, a4 = m + 4 * c,
                a5 = m + 5 * c, a6 = m + 6 * c, a7 = m + 7 * c, a8 = m + 8 * c,
                a9 = m + 9 * c, a10 = m + 10 * c, a11 = m + 11 * c;
            for (long it = 0; it < iters; ++it) {
                STEP(a0) STEP(a1) STEP(a2) STEP(a3) STEP(a4) STEP(a5)
                STEP(a6) STEP(a7) STEP(a8) STEP(a9) STEP(a10) STEP(a11)
            }
            vec s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
            if (s[0] == 12345.0f) printf("unlikely\n");
        }
        double t = omp_get_wtime() - t0;
        if (t < best) best = t;
    }
    printf("lanes %d\n", LANES);
    printf("flops_per_s %.6e\n", 2.0 * LANES * 12 * (double)iters * threads / best);
    return 0;
}
"""


def compile_probe(folder: Path, compiler: Optional[str] = None) -> Optional[Path]:
    """The probe compiled into ``folder``; None without a C compiler (or if it fails)."""
    cc = compiler or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src = Path(folder) / "fma_probe.c"
    exe = Path(folder) / "fma_probe"
    src.write_text(PROBE_SOURCE)
    proc = subprocess.run([cc, "-O2", "-march=native", "-fopenmp", str(src), "-o", str(exe)],
                          capture_output=True, text=True)
    return exe if proc.returncode == 0 else None


def fma_peak(threads: Iterable[int], iters: int = 20_000_000) -> Dict[int, Optional[float]]:
    """Best float32 FLOP/s of the probe per thread count ({n: None} without a compiler).

    iters : FMA steps per accumulator (20M: ~0.1 s per run on a 3 GHz AVX-512 core).
    """
    threads = list(threads)
    with tempfile.TemporaryDirectory(prefix="moelab-fma-") as tmp:
        exe = compile_probe(Path(tmp))
        if exe is None:
            return {n: None for n in threads}
        out = {}
        for n in threads:
            proc = subprocess.run([str(exe), str(int(iters)), str(int(n))], capture_output=True,
                                  text=True)
            m = re.search(r"flops_per_s\s+(\S+)", proc.stdout)
            out[n] = float(m.group(1)) if proc.returncode == 0 and m else None
        return out
