"""System commands: ``bench`` (speed and accuracy of the backends here) and ``info`` (what this install has)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from contrique_video import __version__
from contrique_video.cli.options import backend_pairs, frame_size, guarded, output_file, quiet_option, shared
from contrique_video.decode import DECODERS


@click.command()
@quiet_option
@click.option("--candidates", default=None, callback=backend_pairs,
              help="BACKEND:PRECISION,... to time against the official eager fp32 path; the first is the one "
                   "checked on CLIVE and for memory (default: auto's choice, then every other CPU path).")
@shared("frames", "N frames timed per candidate (default 3: a timing, not a score).", default=3, show_default=True)
@click.option("--size", default="1920x1080", show_default=True, callback=frame_size,
              help="WIDTHxHEIGHT of the timed frames: the ranking of the paths can change with the size.")
@click.option("--repeats", type=click.IntRange(1), default=2, show_default=True,
              help="Timed runs per candidate; the fastest counts.")
@shared("threads")
@click.option("--clive", type=click.Path(file_okay=False), help="CLIVE folder (mos.csv, images/): SRCC change per candidate.")
@click.option("--clive-limit", type=click.IntRange(1), help="Only the first N CLIVE images.")
@click.option("--speed/--no-speed", default=True, show_default=True, help="Time the candidates on frames of --size.")
@click.option("--memory/--no-memory", default=True, show_default=True,
              help="Peak memory for 10 s vs 60 s clips and a 4K frame, with the first candidate.")
@shared("output", "also write the full results as JSON.", type=click.Path(dir_okay=False), callback=output_file())
@shared("weights", "The one timed; --clive and memory use the built-in one.")
@click.option("--autotune", "mode", flag_value="autotune",
              help="Only time auto's CPU candidates on a 1280x720 frame (10-30 s) and keep the fastest for this "
                   "machine and model: --backend auto then runs it instead of its fixed preference.")
@click.option("--startup", "mode", flag_value="startup",
              help="Only time first run (empty cache), warm run and one-image start-up, each a fresh process, of "
                   "the built-in model and of official-layout weights (random-init ResNet-50, speed only) against "
                   "the official eager path (about 2-3 minutes; --threads and -o apply).")
@guarded
def bench(candidates, frames, size, repeats, threads, clive, clive_limit, speed, memory, output, weights, mode):
    """Seconds per frame (1080p unless --size), speed-up over eager fp32, share of peak, feature error; prints a
    markdown table."""
    from contrique_video.api import builtin_weights
    from contrique_video.backends import autotune_here
    from contrique_video.backends import bench as benchmark
    from contrique_video.backends.cpu import cpu_summary

    path = Path(weights) if weights else builtin_weights()
    if mode == "autotune":
        click.echo(autotune_here(path, threads).line())
        return
    if mode == "startup":
        from contrique_video.backends.startup import measure_startup

        result = measure_startup(threads)
        click.echo(result["table"])
        if output:
            Path(output).write_text(json.dumps(result, indent=1))
        return
    pairs = candidates or benchmark.default_candidates(path, threads)
    accuracy = None
    if clive:
        from contrique_video.training.precision import precision_check

        def accuracy(paths):
            return precision_check(clive, paths, limit=clive_limit, threads=threads).entries

    click.echo(f"CPU: {cpu_summary()}")
    result = benchmark.run(path, pairs, frames=frames, repeats=repeats, threads=threads, accuracy=accuracy,
                           memory=memory, speed=speed, size=size)
    if speed:
        click.echo(result["table"])
    for name, check in result.get("accuracy", {}).items():
        click.echo(f"CLIVE ({check['images']}) {name}: SRCC {check['srcc']:.4f} vs fp32 {check['srcc_fp32']:.4f} "
                   f"(change {check['srcc_change']:+.4f}); scores differ by {check['mean_abs_score_change']:.3f} on "
                   f"average, {check['max_abs_score_change']:.3f} at most")
    if "memory" in result:
        m = result["memory"]
        click.echo(f"peak memory: 10 s clip {m['peak_rss_mib_10s']:.0f} MiB, 60 s clip {m['peak_rss_mib_60s']:.0f} MiB "
                   f"({100 * m['growth']:+.1f}%), one 4K frame {m['peak_rss_mib_4k_frame']:.0f} MiB")
    if output:
        Path(output).write_text(json.dumps(result, indent=1))


@click.command()
@quiet_option
@guarded
def info():
    """Versions, decoders, backends, GPU, built-in model and heads."""
    import platform

    import av
    import torch

    from contrique_video.api import builtin_weights
    from contrique_video.backends.cpu import cpu_summary
    from contrique_video.models.head import builtin_heads

    def auto_line(weights) -> str:
        if torch.cuda.is_available() or weights is None:
            from contrique_video.backends import auto_choice

            return "{} {}".format(*auto_choice("cuda" if torch.cuda.is_available() else "cpu"))
        from contrique_video.backends import PREFERENCE, auto_paths
        from contrique_video.backends.autotune import cached_choice, prefer

        choice = cached_choice(weights) or prefer(weights, auto_paths(), PREFERENCE["cpu"])  # info measures nothing
        return f"{choice.backend} {choice.precision} for the built-in model ({choice.reason})"

    weights = builtin_weights()
    lines = {
        "contrique-video": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyav": f"{av.__version__} (FFmpeg {av.ffmpeg_version_info})",
        "decoders": ", ".join(f"{d.name} {'yes' if d.installed() else 'no'}" for d in DECODERS.values()),
        "backends": available_backends(),
        "cpu": cpu_summary(),
        "auto": auto_line(weights),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU visible to PyTorch",
        "built-in model": str(weights) if weights else "not installed",
        "built-in heads": ", ".join(sorted(builtin_heads())) or "none",
    }
    for k, v in lines.items():
        click.echo(f"{k:16} {v}")


def available_backends() -> str:
    """Backends with the precisions this machine runs them at, for `info`."""
    import torch

    from contrique_video.backends import available

    return available(torch.cuda.is_available())
