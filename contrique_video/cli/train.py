"""``contrique-video train``: self-supervised CONTRIQUE training, a thin layer over
:func:`contrique_video.training.train.train`."""

from __future__ import annotations

import json

import click

from contrique_video.cli.options import RegisteredChoice, guarded, output_dir_option, pick_output_dir, quiet_option
from contrique_video.models.families import FAMILIES, trainable_encoders

LITE = FAMILIES["efficientnet-lite"]  # the trunks a quality branch (train-branch) sits beside


def data_options(pristine: str, authentic: str):
    """The image folders both training commands take, and the held-out fold scored at each evaluation."""
    options = [
        click.option("--pristine", required=True, type=click.Path(), help=f"Folder of pristine photos ({pristine})."),
        click.option("--authentic", type=click.Path(), help=f"Folder of {authentic}."),
        click.option("--mos", type=click.Path(dir_okay=False),
                     help="MOS CSV (image,mos) for the authentic folder: a held-out fold is scored at each evaluation."),
        click.option("--holdout", type=click.FloatRange(0, 0.9), default=0.3, show_default=True,
                     help="Fraction of the MOS images held out (never trained on)."),
    ]

    def wrap(f):
        for option in reversed(options):
            f = option(f)
        return f

    return wrap


@click.command()
@quiet_option
@output_dir_option("Run folder (checkpoints, logs).")
@data_options("synthetic distortions are applied to these", "authentically distorted images, each its own class")
@click.option("--objective", type=click.Choice(["contrastive", "classify", "both"]), default="contrastive", show_default=True,
              help="contrastive: the official NT-Xent recipe; classify: cross-entropy over distortion type and level; "
                   "both: the sum of the two.")
@click.option("--arch", type=RegisteredChoice(trainable_encoders), default="resnet50", show_default=True,
              help="Encoder architecture (resnet50 is CONTRIQUE's; efficientnet-lite* start from ImageNet with --init imagenet).")
@click.option("--crop", type=click.IntRange(64, 1024), default=224, show_default=True,
              help="Side in pixels of the square crops trained on.")
@click.option("--batch", type=click.IntRange(2, 65536), default=64, show_default=True, help="Synthetic images per batch.")
@click.option("--authentic-batch", type=click.IntRange(0, 65536), default=32, show_default=True,
              help="Authentic images per batch (with --authentic).")
@click.option("--crops-per-image", type=click.IntRange(1, 64), default=1, show_default=True,
              help="View pairs cut from each distorted image (cheaper data, less diversity).")
@click.option("--steps", type=click.IntRange(1), default=1000, show_default=True, help="Optimiser steps in all.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.05, show_default=True,
              help="Peak learning rate.")
@click.option("--eval-every", type=click.IntRange(1), default=250, show_default=True,
              help="Steps between checkpoints (and held-out scoring with --mos).")
@click.option("--workers", type=click.IntRange(0, 256), default=2, show_default=True, help="Data-generation processes.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Run the encoder on the CPU or the first CUDA GPU.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
              help="Autocast precision (bf16 on GPUs; on this project's CPU bf16 training measured 10x slower).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice (same seed, same batches).")
@click.option("--types", help="Comma-separated distortion types to train on (default: all; see distortions.TYPES).")
@click.option("--init", "init_weights", type=click.Path(dir_okay=False),
              help="Start from these weights (fine-tune) instead of random; 'imagenet' for the Lite ImageNet weights.")
@click.option("--trunk-lr", type=click.FloatRange(0), default=1.0, show_default=True,
              help="The encoder's learning rate as a fraction of --lr (the projector and classifier train at --lr).")
@click.option("--bn", type=click.Choice(["train", "frozen"]), default="train", show_default=True,
              help="frozen: the encoder's BatchNorm statistics stay as initialised (for small batches).")
@click.option("--freeze-stages", type=click.IntRange(0, 7), default=0, show_default=True,
              help="EfficientNet-Lite: keep the stem and this many first stages fixed.")
@click.option("--lite-map", type=click.Choice(["head", "stage7"]), default="head", show_default=True,
              help="EfficientNet-Lite: the map the objectives train; stage7 leaves the head convolution as initialised.")
@click.option("--checkpoint-minutes", type=click.FloatRange(0.1), default=5.0, show_default=True,
              help="Also write OUTPUT/last.pt this often between evaluations.")
@click.option("--threads", type=click.IntRange(1, 1024), help="CPU threads for PyTorch (default: all cores).")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT/last.pt.")
@click.pass_context
@guarded
def train(ctx, outdir, out_alias, pristine, authentic, mos, holdout, objective, arch, crop, batch, authentic_batch, crops_per_image, steps, lr,
          eval_every, workers, device, precision, seed, types, init_weights, trunk_lr, bn, freeze_stages, lite_map,
          checkpoint_minutes, threads, resume):
    """Self-supervised CONTRIQUE training from image folders (see the README's model card)."""
    from contrique_video.training import distortions
    from contrique_video.training.train import TrainConfig
    from contrique_video.training.train import train as run

    out = pick_output_dir(outdir, out_alias)
    chosen = [t.strip() for t in types.split(",")] if types else list(distortions.TYPES)
    if threads:
        import torch

        torch.set_num_threads(threads)

    cfg = TrainConfig(out=out, pristine=pristine, authentic=authentic, mos=mos, holdout=holdout, arch=arch,
                      objective=objective, crop=crop, batch=batch, authentic_batch=authentic_batch,
                      crops_per_image=crops_per_image, steps=steps, lr=lr,
                      eval_every=eval_every, workers=workers, device=device, precision=precision, seed=seed,
                      init=init_weights, types=chosen, trunk_lr=trunk_lr, bn=bn, freeze_stages=freeze_stages,
                      lite_map=lite_map, checkpoint_minutes=checkpoint_minutes)
    result = run(cfg, resume=resume, progress=not ctx.obj["quiet"])
    click.echo(json.dumps({"steps": result["steps"], "best_srcc": result["best_srcc"], "out": out}))


@click.command("train-branch")
@quiet_option
@output_dir_option("Run folder (checkpoints, models, learning curve).")
@data_options("the ladders' clean sources", "authentic images, also cut into ladders (harmful types only)")
@click.option("--variant", type=RegisteredChoice(lambda: [e.removeprefix("efficientnet-") for e in LITE.encoders]),
              default="lite2", show_default=True,
              help="The frozen ImageNet EfficientNet-Lite trunk the branch sits beside.")
@click.option("--tap", type=click.IntRange(1, 7), default=2, show_default=True, help="The trunk stage whose map the branch reads.")
@click.option("--width", type=click.IntRange(4, 1024), default=64, show_default=True, help="The branch's first width (it ends at 2x).")
@click.option("--pixels", is_flag=True, help="The branch also reads the input pixels (patches lined up with the tapped map).")
@click.option("--crop", type=click.IntRange(64, 1024), default=128, show_default=True, help="Side in pixels of the ladders' crops.")
@click.option("--sources", type=click.IntRange(1, 4096), default=8, show_default=True, help="Ladders per step (each clean + 5 levels).")
@click.option("--authentic-share", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Share of the ladders cut from authentic images (with --authentic).")
@click.option("--steps", type=click.IntRange(1), default=3000, show_default=True, help="Optimiser steps in all.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True, help="Peak learning rate (AdamW).")
@click.option("--margin", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Ranking margin between a ladder's levels.")
@click.option("--lam-classify", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Weight of the distortion classification loss (0: ranking alone).")
@click.option("--eval-every", type=click.IntRange(1), default=500, show_default=True, help="Steps between evaluations.")
@click.option("--checkpoint-minutes", type=click.FloatRange(0.1), default=5.0, show_default=True,
              help="Also write OUTPUT/last.pt this often between evaluations.")
@click.option("--workers", type=click.IntRange(0, 256), default=1, show_default=True, help="Data-generation processes.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Run the trunk and the branch on the CPU or the first CUDA GPU.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice (same seed, same batches).")
@click.option("--threads", type=click.IntRange(1, 1024), help="CPU threads for PyTorch (default: all cores).")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT/last.pt.")
@click.pass_context
@guarded
def train_branch(ctx, outdir, out_alias, pristine, authentic, mos, holdout, variant, tap, width, pixels, crop, sources,
                 authentic_share, steps, lr, margin, lam_classify, eval_every, checkpoint_minutes, workers, device, seed, threads,
                 resume):
    """Train a quality branch beside a frozen ImageNet EfficientNet-Lite trunk (README: A quality branch)."""
    from contrique_video.training.branch import BranchConfig
    from contrique_video.training.branch import train_branch as run

    out = pick_output_dir(outdir, out_alias)
    if threads:
        import torch

        torch.set_num_threads(threads)
    cfg = BranchConfig(out=out, pristine=pristine, authentic=authentic, mos=mos, holdout=holdout, variant=variant,
                       tap=tap, width=width, pixels=pixels, crop=crop, sources=sources, authentic_share=authentic_share, steps=steps,
                       lr=lr, margin=margin, lam_classify=lam_classify, eval_every=eval_every,
                       checkpoint_minutes=checkpoint_minutes, workers=workers, device=device, seed=seed)
    result = run(cfg, resume=resume, progress=not ctx.obj["quiet"])
    last = result["history"][-1] if result["history"] else {}
    click.echo(json.dumps({"steps": last.get("step"), "srcc_both": last.get("srcc_both"), "out": out}))
