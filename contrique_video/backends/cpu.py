"""What the CPU runs natively, from /proc/cpuinfo: decides which reduced precisions are worth offering."""

from __future__ import annotations

import functools
import os
import platform
import sys

#: The CPU flags that decide which precisions run natively (shown by ``bench`` and ``info``).
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")
#: Native instructions a reduced precision needs on a CPU; without them it is emulated (bf16 measured ~5x slower).
NATIVE = {"bf16": {"avx512_bf16", "amx_bf16"}, "int8": {"avx512_vnni", "avx_vnni", "amx_int8"}}


@functools.lru_cache(maxsize=1)
def read_cpuinfo() -> tuple[str, set[str]]:
    """The CPU's model name and feature flags from /proc/cpuinfo (Linux); platform's name and no flags elsewhere."""
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not name:
                    name = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
                if name and flags:
                    break
    except OSError:
        pass
    return name or platform.processor() or platform.machine(), flags


def cpu_flags() -> set[str]:
    return read_cpuinfo()[1]


def native(precision: str, flags: set[str] | None = None) -> bool:
    """Whether the CPU (or these ``flags``) runs ``precision`` natively; fp32 always."""
    return precision not in NATIVE or bool(NATIVE[precision] & (cpu_flags() if flags is None else flags))


def torch_capability() -> str:
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except AttributeError:  # older torch
        return "unknown"


def torch_threads() -> int:
    """The thread count torch uses (``--threads`` sets it), so every backend of a run uses the same."""
    import torch

    return torch.get_num_threads()


def inference_threads(threads: int | None = None) -> int:
    """Threads for a runtime's session: ``threads``; else torch's count when torch is loaded (``--threads`` set
    it); else $OMP_NUM_THREADS; else 0, the runtime's own default (one per physical core, as torch's).
    Importing torch only to ask it costs a second of start-up."""
    if threads:
        return threads
    if "torch" in sys.modules:
        return torch_threads()
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0")))
    except ValueError:
        return 0


def cpu_summary() -> str:
    """One line: the CPU's name, its relevant flags and torch's CPU capability, e.g. for ``bench`` and ``info``."""
    name, flags = read_cpuinfo()
    have = [f for f in RELEVANT_FLAGS if f in flags]
    return f"{name}; flags: {' '.join(have) or 'none of ' + ', '.join(RELEVANT_FLAGS)}; torch capability: {torch_capability()}"


__all__ = ["NATIVE", "RELEVANT_FLAGS", "cpu_flags", "cpu_summary", "inference_threads", "native", "read_cpuinfo",
           "torch_capability", "torch_threads"]
