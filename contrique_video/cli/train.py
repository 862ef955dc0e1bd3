"""``contrique-video train``: self-supervised CONTRIQUE training, a thin layer over
:func:`contrique_video.training.train.train`."""

from __future__ import annotations

import json

import click

from contrique_video.cli.options import guarded, output_dir_option, pick_output_dir, quiet_option


@click.command()
@quiet_option
@output_dir_option("Run folder (checkpoints, logs).")
@click.option("--pristine", required=True, type=click.Path(), help="Folder of pristine photos (synthetic distortions are applied to these).")
@click.option("--authentic", type=click.Path(), help="Folder of authentically distorted images, each its own class.")
@click.option("--mos", type=click.Path(dir_okay=False), help="MOS CSV (image,mos) for the authentic folder: a held-out fold is scored at each checkpoint.")
@click.option("--holdout", type=click.FloatRange(0, 0.9), default=0.3, show_default=True, help="Fraction of the MOS images held out (never trained on).")
@click.option("--objective", type=click.Choice(["contrastive", "classify", "both"]), default="contrastive", show_default=True,
              help="contrastive: the official NT-Xent recipe; classify: cross-entropy over distortion type and level; "
                   "both: the sum of the two.")
@click.option("--arch", type=click.Choice(["resnet18", "resnet34", "resnet50", "efficientnet-lite0", "efficientnet-lite1",
                                           "efficientnet-lite2"]), default="resnet50", show_default=True,
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
