"""The ``python -m pipeline`` command line: parses options and calls library functions, nothing more.

Commands: ``eval`` (benchmark PSNR/SSIM of SwinIR, bicubic or a fake-quantized model), ``train-fp``
(train the reference SwinIR-light), ``calibrate`` (quantization bounds file), ``build`` (deployable
artifact from the model and a bounds file).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import platform
import shlex
import sys
from pathlib import Path

import torch

from srcore.checkpoint import CheckpointError
from srcore.data import DatasetError
from srcore.distributed import process_group
from srcore.images import ImageReadError
from srcore.model import VARIANTS
from srcore.paths import DATA_ENV_VAR, cache_dir, calib_dir, data_root

log = logging.getLogger("pipeline")

# Errors that are the user's input, not a bug: printed as one line, exit status 2.
USER_ERRORS: tuple[type[Exception], ...] = (
    CheckpointError, DatasetError, ImageReadError, FileNotFoundError, FileExistsError, ValueError,
)


def _default_benchmarks() -> list[Path]:
    root = data_root(required=False)
    folders = [root / "benchmark" / name for name in ("Set5", "Set14")] if root else []
    folders = [f for f in folders if f.is_dir()]
    if not folders:
        raise FileNotFoundError(f"no --data given and no Set5/Set14 under the shared data folder (set {DATA_ENV_VAR})")
    return folders


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested, but no CUDA device is available (this torch build: "
                         f"{torch.__version__}); use --device cpu")
    return torch.device(name)


def _run_notes(args: argparse.Namespace, weights_line: str) -> list[str]:
    return [
        f"weights: {weights_line}",
        f"command: `python -m pipeline {shlex.join(sys.argv[1:])}`",
        f"host: {platform.machine()} {platform.system()}, device {args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
    ]


def cmd_eval(args: argparse.Namespace) -> int:
    from pipeline.evaluate import (
        bicubic_upscaler,
        evaluate,
        model_upscaler,
        to_markdown,
        write_json,
    )
    from srcore.weights import load_model

    device = _device(args.device)
    folders = args.data or _default_benchmarks()
    if args.model == "bicubic":
        if args.bounds:
            raise ValueError("--bounds applies to --model swinir, not bicubic")
        upscaler, weights_line, title = bicubic_upscaler(args.scale), "none (MATLAB-compatible bicubic)", "Bicubic"
    else:
        model, info = load_model(args.weights, args.scale, device)
        weights_line, title = info.describe(), "SwinIR-light FP32"
        if args.bounds:
            from calibration.bounds import apply_bounds_, load_bounds

            from calibration.deploy import DeployMode, simulate

            bounds = load_bounds(args.bounds)
            apply_bounds_(model, bounds, expected_weights_sha256=info.sha256)
            mode = bounds.quant_config.deploy
            title = f"SwinIR-light {bounds.quant_config.label} fake-quant ({bounds.method})"
            if mode is not DeployMode.PAPER:  # scored as it was calibrated: the Linears run as the target runs them
                model = simulate(model, mode)
                title += f", {mode.value} deploy simulation (calibrated grids)"
            model.to(device)
            weights_line += f"; bounds: {args.bounds} ({bounds.method}, {bounds.settings.get('selection', 'no DQC')})"
        upscaler = model_upscaler(model, device)
    results = evaluate(
        upscaler, folders, args.scale, tile=args.tile, overlap=args.tile_overlap,
        save_dir=args.save_images, on_error=args.on_error, progress=not args.quiet,
    )
    notes = _run_notes(args, weights_line)
    sys.stdout.write(to_markdown(results, f"{title} x{args.scale}", notes))
    if args.json:
        write_json(results, args.json, {"title": title, "notes": notes, "tile": args.tile})
    return 0


def _default_train_folders() -> list[Path]:
    root = data_root(required=True)
    folders = sorted(p for p in (root / "train").iterdir() if p.is_dir())
    if not folders:
        raise FileNotFoundError(f"no training folders under {root / 'train'}; pass --hr")
    return folders


@contextlib.contextmanager
def _ranks(device: str):
    """torchrun's process group (:func:`srcore.distributed.process_group`); ranks but 0 log warnings only."""
    with process_group(device) as dist:
        if not dist.is_main:
            for name in ("", *_OWN_LOGGERS):  # the root and sr2bit's own (configure_logging)
                logging.getLogger(name).setLevel(logging.WARNING)
        yield dist


def cmd_train_fp(args: argparse.Namespace) -> int:
    from pipeline.train import TrainConfig, train

    _device(args.device)
    hr = args.hr or _default_train_folders()
    val = None if args.no_val else (args.val or data_root(required=True) / "benchmark" / "Set5")
    config = TrainConfig(
        scale=args.scale, variant=args.variant, hr_folders=tuple(str(f) for f in hr),
        val_folder=str(val) if val else None,
        lr_patch=args.patch, batch_size=args.batch_size, steps=args.steps, learning_rate=args.lr,
        warmup_steps=args.warmup, seed=args.seed, validate_every=args.validate_every,
        checkpoint_every=args.checkpoint_every, bf16=args.bf16, compile=args.compile,
        init_weights=str(args.init_weights) if args.init_weights else None,
    )
    with _ranks(args.device) as dist:
        result = train(config, args.run_dir, device=args.device, progress=not args.quiet,
                       until_step=args.until_step, workers=args.workers, dist=dist)
    if not dist.is_main:
        return 0
    print(f"trained to step {result['step']} in {result['wall_s']:.0f} s; best validation PSNR "
          f"{result['best_psnr']:.3f} dB; weights: {Path(args.run_dir) / 'best.safetensors'}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from calibration.bounds import save_bounds
    from calibration.config import (
        DobiConfig,
        MinMaxConfig,
        PercentileConfig,
        QuantConfig,
    )
    from calibration.dqc import DQC_PRESETS
    from pipeline.calibrate import CalibrationConfig, run_calibration
    from srcore.weights import load_model

    device = _device(args.device)
    if args.deploy != "paper" and args.act_bits not in (None, 16):
        raise SystemExit(f"--deploy {args.deploy} calibrates weights only (the runtime handles activations); "
                         f"drop --act-bits {args.act_bits}")
    act_bits = None if args.deploy != "paper" or args.act_bits == 16 else (args.act_bits or args.bits)
    quant = QuantConfig(weight_bits=args.weight_bits or args.bits, act_bits=act_bits, deploy=args.deploy,
                        zero_softmax_lower=args.zero_softmax_lower)
    init = {
        "minmax": MinMaxConfig(),
        "percentile": PercentileConfig(percentile=args.percentile),
        "dobi": DobiConfig(variant=args.dobi_variant, all_two_sided=args.all_two_sided),
        "2dquant": DobiConfig(variant=args.dobi_variant, all_two_sided=args.all_two_sided),
    }[args.method]
    dqc = None
    if args.method == "2dquant":
        overrides = {k: v for k, v in (("iterations", args.iters), ("batch_size", args.batch_size)) if v is not None}
        overrides["train_exponential_lower"] = args.train_exponential_lower
        dqc = dataclasses.replace(DQC_PRESETS[args.dqc_preset], **overrides)
    config = CalibrationConfig(args.method, quant, init, dqc, seed=args.seed)
    model, info = load_model(args.weights, args.scale, device)
    out = args.out or Path("bounds") / f"{info.name}-{quant.label.lower()}-{args.method}.safetensors"
    with _ranks(args.device) as dist:
        result = run_calibration(model, config, args.calib or [calib_dir()], weights_name=info.name, device=device,
                                 run_dir=args.run_dir, select_on=args.select_on, progress=not args.quiet, dist=dist)
    if not dist.is_main:
        return 0
    path = save_bounds(result.bounds, out)
    if args.plot:
        from pipeline.plots import plot_calibration

        for png in plot_calibration(result.model, result, args.plot):
            log.info("wrote %s", png)
    print(f"wrote {path}: {len(result.bounds.quantizers)} quantizers, {quant.label}, method {result.bounds.method}, "
          f"weights {info.describe()}")
    if result.dqc:
        print(f"DQC: {len(result.dqc.losses)} steps in {result.dqc.wall_s:.0f} s on {device}, loss "
              f"{result.dqc.losses[0]:.3e} -> {result.dqc.losses[-1]:.3e}, kept step {result.dqc.kept_step} "
              f"({result.dqc.selection})")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from calibration.bounds import BoundsError, load_bounds
    from calibration.config import QuantConfig
    from pipeline.build import BuildChecks, build, summary_table
    from pipeline.calibrate import CalibrationConfig, Method, calibrate
    from srcore.weights import load_model
    from targets import get_target
    from targets.config import CONFIGS

    if args.target not in CONFIGS:
        get_target(args.target)  # the unknown-target error, listing the known ones
    if args.fp32_ops and args.target != "coreml":
        raise ValueError("--fp32-ops is a Core ML option (ExecuTorch and TFLite compute in fp32 already)")
    if args.int_grid and args.target == "coreml":
        raise ValueError("--int-grid is an ExecuTorch/TFLite option (Core ML stores the calibrated grid as a table)")
    options = {"fp32_ops": tuple(args.fp32_ops)} if args.fp32_ops else {}
    options |= {"conv_weights": args.conv_weights} if args.conv_weights else {}
    options |= {"int_grid": args.int_grid} if args.int_grid else {}
    if args.bias_tables:
        if args.target == "coreml":
            raise ValueError("--bias-tables is an ExecuTorch and TFLite option (Core ML stores fp16 tables in an fp16 "
                             "program)")
        options["bias_tables"] = args.bias_tables
    if args.window_chunk is not None:
        if args.target == "coreml":
            raise ValueError("--window-chunk is an ExecuTorch and TFLite option")
        options["window_chunk"] = args.window_chunk or None
    if args.shared_pieces is not None:
        if args.target != "executorch":
            raise ValueError("--shared-pieces is an ExecuTorch option")
        options["shared_pieces"] = args.shared_pieces
    if args.tiles is not None:
        options["tiles"] = tuple(args.tiles)
    config = CONFIGS[args.target](tile=args.tile, **options)
    backend = get_target(config, args.bits)  # a wrong target or bit width fails before data or weights are read
    score_on = None
    if args.score:
        root = data_root(required=False)
        score_on = args.score_on or (root / "benchmark" / "Set5" if root else None)
        if score_on is None or not Path(score_on).is_dir():
            raise FileNotFoundError(f"no benchmark folder to score the simulation on ({score_on}); "
                                    "pass --score-on DIR or --no-score")
    probe_on = (args.calib or [None])[0]
    if probe_on is None and data_root(required=False) is not None:
        with contextlib.suppress(FileNotFoundError):  # no calibration images: the probe is skipped
            probe_on = calib_dir()
    checks = BuildChecks(score_on=score_on, threads=tuple(args.threads), runs=args.runs,
                         baseline_cache=None if args.no_cache else cache_dir(), probe_on=probe_on)
    model, info = load_model(args.weights, args.scale)
    out = args.out or Path("build") / f"{info.name}-{args.target}-w{args.bits}-t{args.tile}"
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} exists; choose another --out or pass --force to replace it")
    if args.bounds is None:
        # Weight bounds only, in the target's own deploy mode: DOBI's weight bounds do not depend on activations,
        # and the artifact keeps no activation bound.
        quant = QuantConfig(args.bits, None, deploy=backend.deploy_mode)
        log.info("no --bounds given: calibrating %s with DOBI first", quant.label)
        bounds = calibrate(model, CalibrationConfig(Method.DOBI, quant), args.calib or [calib_dir()],
                           weights_name=info.name, progress=False)
    else:
        bounds = load_bounds(args.bounds)
        if bounds.quant_config.weight_bits != args.bits:
            raise BoundsError(f"the bounds file quantizes weights to {bounds.quant_config.weight_bits} bits, "
                              f"but --bits {args.bits} was asked for")
    print(summary_table(build(model, bounds, config, out, force=args.force, checks=checks)))
    return 0


def cmd_upscale(args: argparse.Namespace) -> int:
    from pipeline.upscale import AlphaMethod, UpscaleConfig, upscale_file

    if args.artifact:
        if args.weights or args.bounds:
            raise ValueError("give either --artifact or --weights/--bounds, not both")
        from pipeline.artifacts import load_build

        build = load_build(args.artifact)
        upscaler, scale, tile = build.tile_sizes(threads=args.threads, workers=args.workers), build.scale, args.tile
        if tile not in (None, *build.tiles):
            raise ValueError(f"the artifact runs {', '.join(map(str, build.tiles))} px tiles; --tile {tile} is not one")
        what = f"{build.target} artifact {build.artifact} (W{build.bits}, {build.manifest['weights']['name']})"
    else:
        if args.workers not in (None, 1):
            raise ValueError("--workers applies to an --artifact; the PyTorch path runs in this process (--threads)")
        from pipeline.evaluate import model_upscaler
        from srcore.weights import load_model

        model, info = load_model(args.weights, args.scale)
        what = f"PyTorch FP32, weights {info.describe()}"
        if args.bounds:
            from calibration.bounds import apply_bounds_, load_bounds

            apply_bounds_(model, load_bounds(args.bounds), expected_weights_sha256=info.sha256)
            what += f", fake-quantized with {args.bounds}"
        if args.threads:
            torch.set_num_threads(args.threads)
        upscaler, scale, tile = model_upscaler(model), args.scale, args.tile or 128
    overlap = args.overlap
    config = UpscaleConfig(AlphaMethod(args.alpha), args.bit_depth, args.quality, args.max_memory)
    if args.input.is_dir():
        from pipeline.photo_writer import OutputFormat
        from pipeline.upscale_folder import upscale_folder

        folder = upscale_folder(upscaler, args.input, args.output, scale, tile, overlap,
                                fmt=OutputFormat(args.format or "png"), recursive=args.recursive, force=args.force,
                                progress=not args.quiet, config=config)
        print(f"{args.input} -> {args.output}: {folder.summary()}; {what}")  # failures were logged as they came
        return 2 if folder.failed else 0
    if args.recursive or args.force or args.format is not None:
        raise ValueError("--recursive, --force and --format apply to an input folder; for one file the output "
                         "name gives the format and is always overwritten")
    report = upscale_file(upscaler, args.input, args.output, scale, tile, overlap, progress=not args.quiet,
                          config=config)
    print(f"wrote {args.output}: {report.input_size[1]}x{report.input_size[0]} -> {report.output_size[1]}x"
          f"{report.output_size[0]} in {report.seconds:.1f} s, {report.tiles} tiles of {report.tile} px (overlap "
          f"{report.overlap}{f', {report.workers} processes' if report.workers > 1 else ''}), "
          f"peak {'memory (PSS)' if report.workers > 1 else 'RSS'} {report.peak_rss_mb:.0f} MB; {what}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from pipeline.profile import profile_builds, to_markdown, write_report

    data = [] if args.no_accuracy else (args.data or _default_benchmarks()[:1])
    report = profile_builds(args.builds, tuple(args.threads), args.runs, args.warmup, data,
                            op_profile=not args.no_ops)
    command = f"python -m pipeline {shlex.join(sys.argv[1:])}"
    sys.stdout.write(to_markdown(report, command))
    for path in write_report(report, args.out, command):
        print(f"wrote {path}")
    return 0


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """--weights and --scale, the same for every command that starts from the FP model."""
    parser.add_argument("--weights", default=None, help="FP weights (as for eval); default the shipped model")
    parser.add_argument("--scale", type=int, choices=(2, 3, 4), default=4, help="upscaling factor (default 4)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="sr2bit: 2/3/4-bit SwinIR-light for phones.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ev = sub.add_parser("eval", help="PSNR/SSIM (Y channel) on benchmark folders",
                        description="Upscale benchmark LR images and score them against HR (2DQuant protocol: "
                                    "uint8 output, Y channel, `scale` px border cropped, mean per set).")
    ev.add_argument("--model", choices=("swinir", "bicubic"), default="swinir",
                    help="swinir (default) or the MATLAB-compatible bicubic baseline")
    ev.add_argument("--weights", default=None,
                    help="weights file (.pth official/plain state dict, or .safetensors), 'official' to download the "
                         "SwinIR release file (needs internet, cached), or omit for the shipped sr2bit model")
    ev.add_argument("--bounds", type=Path, default=None,
                    help="bounds file from `calibrate`: evaluate the fake-quantized model (must match --weights)")
    ev.add_argument("--scale", type=int, choices=(2, 3, 4), default=4, help="upscaling factor (default 4)")
    ev.add_argument("--data", nargs="+", type=Path, default=None,
                    help=f"benchmark folders (HR/ + LR_bicubic/X<s>/, or HR images only); default Set5 and Set14 "
                         f"from ${DATA_ENV_VAR} (default ../shared/data)")
    ev.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model runs (default cpu)")
    ev.add_argument("--tile", type=int, default=None,
                    help="LR tile size for tiled inference with bounded memory (e.g. 128); default: whole images")
    ev.add_argument("--tile-overlap", type=int, default=16,
                    help="minimum LR overlap between tiles (default 16; tiles start on the 8 px window grid, so "
                         "tile - overlap is rounded down to a multiple of 8)")
    ev.add_argument("--json", type=Path, default=None, help="also write per-image and per-set scores to this JSON file")
    ev.add_argument("--save-images", type=Path, default=None, metavar="DIR", help="write SR images to DIR/<set>/<name>.png")
    ev.add_argument("--on-error", choices=("skip", "raise"), default="skip",
                    help="unreadable or too-small images: skip with a warning (default) or stop")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=cmd_eval)

    tr = sub.add_parser("train-fp", help="train the full-precision SwinIR-light reference model",
                        description="Train SwinIR-light from scratch on HR folders (LR made with MATLAB bicubic on the "
                                    "fly). Re-running with the same --run-dir resumes from its last.pt.")
    tr.add_argument("--run-dir", type=Path, required=True, help="folder for last.pt, best.safetensors and log.jsonl")
    tr.add_argument("--scale", type=int, choices=(2, 3, 4), default=4, help="upscaling factor (default 4)")
    tr.add_argument("--hr", nargs="+", type=Path, default=None,
                    help="HR training folders (searched recursively); default: every folder in <data>/train")
    tr.add_argument("--val", type=Path, default=None,
                    help="validation benchmark folder (default <data>/benchmark/Set5)")
    tr.add_argument("--no-val", action="store_true", help="no validation; best.safetensors is the last model")
    tr.add_argument("--steps", type=int, default=100_000, help="total optimizer steps (default 100000)")
    tr.add_argument("--until-step", type=int, default=None,
                    help="stop (with a checkpoint) at this step; the schedule still follows --steps")
    tr.add_argument("--variant", choices=tuple(VARIANTS), default="light",
                    help="model size: light (SwinIR-light, default) or tiny (a few seconds on CPU, for tests)")
    tr.add_argument("--batch-size", type=int, default=16,
                    help="crops per step (default 16); under torchrun the global batch, split evenly across processes")
    tr.add_argument("--patch", type=int, default=64, help="LR crop size; HR crops are patch*scale (default 64)")
    tr.add_argument("--lr", type=float, default=5e-4, help="peak Adam learning rate, cosine-decayed (default 5e-4)")
    tr.add_argument("--warmup", type=int, default=200, help="linear warm-up steps (default 200)")
    tr.add_argument("--seed", type=int, default=0, help="seed for weights init and crops (default 0)")
    tr.add_argument("--validate-every", type=int, default=500, help="steps between validations (default 500)")
    tr.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints (default 200)")
    tr.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default cpu")
    tr.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=False, help="bf16 autocast (CUDA)")
    tr.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False, help="torch.compile the model")
    tr.add_argument("--init-weights", type=Path, default=None,
                    help="fine-tune from these weights (e.g. the shipped model) instead of a random init")
    tr.add_argument("--workers", type=int, default=0,
                    help="processes preparing crops ahead (0: in the training process); same crops either way")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_train_fp)

    ca = sub.add_parser("calibrate", help="calibrate quantization bounds and write a bounds file",
                        description="Quantize SwinIR-light (q/k/v/proj/fc1/fc2 inputs and weights, the attention-matmul "
                                    "operands: 384 per-tensor quantizers) and calibrate their bounds with MinMax, "
                                    "Percentile, DOBI or 2DQuant (DOBI + DQC). Writes a self-describing bounds file.")
    ca.add_argument("--method", choices=("minmax", "percentile", "dobi", "2dquant"), default="2dquant",
                    help="bound calibration method (default 2dquant = DOBI then DQC)")
    ca.add_argument("--bits", type=int, choices=(2, 3, 4, 8), default=4, help="bits of weights and activations (default 4)")
    ca.add_argument("--weight-bits", type=int, choices=(2, 3, 4, 8), default=None, help="override weight bits")
    ca.add_argument("--act-bits", type=int, choices=(2, 3, 4, 8, 16), default=None,
                    help="override activation bits; 16 keeps activations in float (weights only, e.g. W4A16)")
    _add_model_options(ca)
    ca.add_argument("--calib", nargs="+", type=Path, default=None,
                    help="folders of LR calibration images (default <data>/calib/DF2K_LR_bicubic/X4)")
    ca.add_argument("--seed", type=int, default=0, help="seed of the calibration crops (default 0)")
    ca.add_argument("--percentile", type=float, default=0.01,
                    help="percentile method: clip below p%% and above (100-p)%% (default 0.01)")
    ca.add_argument("--dobi-variant", choices=("paper", "code"), default="paper",
                    help="DOBI candidate grid: the paper's Alg. 1 (default) or the released code's")
    ca.add_argument("--all-two-sided", action=argparse.BooleanOptionalAction, default=False,
                    help="search both bounds of every quantizer, as the released code does (default: the paper's "
                         "upper-only search for post-softmax and post-GELU tensors)")
    ca.add_argument("--dqc-preset", choices=("paper", "code", "cpu"), default="cpu",
                    help="DQC settings: paper (batch 32, 3000 it, cosine), code (batch 16, 4000 it, constant), "
                         "cpu (batch 4, 200 it, cosine; default)")
    ca.add_argument("--iters", type=int, default=None, help="override the preset's DQC iterations")
    ca.add_argument("--batch-size", type=int, default=None,
                    help="override the preset's DQC batch size (under torchrun: global, split evenly across processes)")
    ca.add_argument("--deploy", choices=("paper", "int8-token", "fp16"), default="paper",
                    help="what the student runs like during calibration: paper = activations fake-quantized at "
                         "--act-bits (2DQuant; default); int8-token = weights only, Linear inputs dynamic int8 per "
                         "token (ExecuTorch, TFLite); fp16 = weights only, Linear inputs/outputs in fp16 (Core ML). "
                         "Recorded in the bounds file; build warns when the target runs another mode")
    ca.add_argument("--zero-softmax-lower", action=argparse.BooleanOptionalAction, default=True,
                    help="pin the post-softmax quantizers' lower bound at exactly 0, so masked attention "
                         "probabilities of shifted windows stay 0 (default). --no-zero-softmax-lower calibrates and "
                         "trains it like any bound, as the released code does (it can rise above 0 and leak)")
    ca.add_argument("--train-exponential-lower", action=argparse.BooleanOptionalAction, default=True,
                    help="DQC also trains the lower bound of the fc2-input (post-GELU) quantizers, and of the "
                         "post-softmax ones under --no-zero-softmax-lower (released code; default). "
                         "--no-train-exponential-lower keeps DOBI's lower bounds")
    ca.add_argument("--select-on", type=Path, default=None,
                    help="benchmark folder to select the best DQC step on (the paper uses Set5, a test set: results "
                         "are then optimistic); default: keep the last step")
    ca.add_argument("--run-dir", type=Path, default=None, help="DQC checkpoint folder; re-running resumes from it")
    ca.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where DQC runs (default cpu)")
    ca.add_argument("--out", type=Path, default=None, help="bounds file to write (default bounds/<weights>-<wXaY>-<method>.safetensors)")
    ca.add_argument("--plot", type=Path, default=None, metavar="DIR",
                    help="write PNGs: fraction of each tensor inside [l, u] (before/after DQC) and the DQC loss curve")
    ca.add_argument("--quiet", action="store_true", help="no progress bar")
    ca.set_defaults(func=cmd_calibrate)

    bu = sub.add_parser("build", help="lower the quantized model to a deployable artifact (Core ML, ExecuTorch, TFLite)",
                        description="Turn the FP model plus a bounds file (calibrating with DOBI first when none is "
                                    "given) into a verified artifact folder: the artifact and a manifest.json. "
                                    "Quantized linear weights are stored exactly on their calibrated grids (Core ML: "
                                    "lookup tables; ExecuTorch and TFLite: int4 codes after snapping each grid to an "
                                    "integer zero point). ExecuTorch and TFLite artifacts also get an FP32 baseline "
                                    "of the same graph, are run and scored here, and are timed against it. A full "
                                    "build takes about 2-8 minutes on 2 cores (README).")
    bu.add_argument("--target", required=True, help="backend: coreml, executorch or tflite")
    bu.add_argument("--bits", type=int, default=4,
                    help="weight bits (default 4); coreml 2/3/4/8, executorch and tflite 2/3/4; must match --bounds")
    bu.add_argument("--bounds", type=Path, default=None,
                    help="bounds file from `pipeline calibrate` (default: DOBI weight bounds in the target's deploy mode)")
    _add_model_options(bu)
    bu.add_argument("--tile", type=int, default=64,
                    help="the artifact's own LR input side, a multiple of 8 (default 64): scored, verified and timed "
                         "against the FP32 baseline at this size")
    bu.add_argument("--tiles", type=int, nargs="+", default=None,
                    help="further LR tile sides the same artifact runs, one ExecuTorch method, TFLite signature or "
                         "Core ML function each, sharing the weights but each adding its graph: at x4 0.06 MB "
                         "(ExecuTorch 128 px, whose Swin-block pieces are the 64 px graphs; 96 and 192 px together "
                         "0.13 MB), 0.15 MB (TFLite), 0.24 MB (Core ML) "
                         "(default ExecuTorch 64 128, TFLite and Core ML none; `pipeline upscale` picks the fastest "
                         "for each photo; reports/upscale_photo.md measures them)")
    bu.add_argument("--calib", nargs="+", type=Path, default=None,
                    help="LR calibration folders when no --bounds is given (default <data>/calib/DF2K_LR_bicubic/X4)")
    bu.add_argument("--out", type=Path, default=None,
                    help="output folder (default build/<weights>-<target>-w<bits>-t<tile>)")
    bu.add_argument("--force", action="store_true", help="replace an existing output folder")
    bu.add_argument("--score", action=argparse.BooleanOptionalAction, default=True,
                    help="score the FP model, the PyTorch simulation of the artifact and, where it runs here, the "
                         "artifact itself on the same tiles into the manifest (default on)")
    bu.add_argument("--score-on", type=Path, default=None, help="benchmark folder for --score (default <data>/benchmark/Set5)")
    bu.add_argument("--threads", type=int, nargs="*", default=[1, 2],
                    help="thread counts to time the artifact and its FP32 baseline with (ExecuTorch, TFLite; default "
                         "1 2; none: no timing); then each tile size alone with each count, and with n worker "
                         "processes of one thread for each count n > 1 (what `pipeline upscale` chooses from)")
    bu.add_argument("--runs", type=int, default=10, help="timed runs per latency, after 3 warm-up runs (default 10)")
    bu.add_argument("--fp32-ops", nargs="+", choices=["layer_norm", "softmax"], default=[],
                    help="Core ML: keep these ops in fp32 inside the fp16 program (the build records the fp16 "
                         "headroom of LayerNorm, attention logits and activations on calibration crops and warns "
                         "below 4x)")
    bu.add_argument("--conv-weights", choices=["float", "fp16", "int8"], default=None,
                    help="store the convolutions as floats (fp16 in Core ML, fp32 in TFLite and ExecuTorch), as fp16 "
                         "filters that the runtime widens to fp32 at load (ExecuTorch only) or as int8 codes with one "
                         "fp16 scale per output channel (default: the target config's, int8 for Core ML and TFLite, fp16 "
                         "for ExecuTorch, whose int8 convolutions run as 3x3 patches times an int8 fully connected "
                         "op: 0.18 MB smaller at x4, a tile 0.91-0.96x as fast; reports/conv_weights.md and "
                         "conv_weights_executorch.md measure bytes, dB and latency)")
    bu.add_argument("--bias-tables", choices=["fp16", "fp32"], default=None,
                    help="ExecuTorch, TFLite: the precision of the relative-position bias tables (default fp16: "
                         "rounded in the simulation too, 65 KB smaller at x4; reports/bias_tables.md and "
                         "bias_tables_executorch.md measure bytes, dB and latency)")
    bu.add_argument("--window-chunk", type=int, default=None, metavar="WINDOWS",
                    help="ExecuTorch, TFLite: run each Swin block (norms, attention, MLP) over at most this many 8x8 "
                         "windows at a time, one piece after another (default 64: a 64 px tile runs whole, a 128 px one in "
                         "4 pieces; 0: the whole tile at once). Same values; tiles run faster because each piece's "
                         "tensors stay in the CPU cache, but each piece adds graph bytes and lowering time "
                         "(reports/upscale_photo.md)")
    bu.add_argument("--shared-pieces", action=argparse.BooleanOptionalAction, default=None,
                    help="ExecuTorch: lower each Swin-block piece of --window-chunk windows as an XNNPACK graph of its "
                         "own (a 64 px tile as one piece too), so that the .pte stores each distinct piece once, "
                         "whichever tile sizes and pieces run it (default: on, off with --window-chunk 0; "
                         "--no-shared-pieces: one partition per method, 0.43 MB larger at W4, a 64 px tile 3%% "
                         "faster; reports/shared_pieces.md)")
    bu.add_argument("--int-grid", choices=["exact", "snapped"], default=None,
                    help="ExecuTorch/TFLite: store each 2DQuant grid snapped to an integer offset (the default: no "
                         "extra work, but a moved grid) or exactly (int4 codes plus one extra output row per grid for "
                         "its offset, about 20%% slower; TFLite stores 2-bit exact grids as INT2, four codes per byte); "
                         "reports/deploy_calibration.md section 3 measures both")
    bu.add_argument("--no-cache", action="store_true",
                    help="lower the FP32 baseline again instead of reusing the one cached in $SR2BIT_CACHE "
                         "(default ~/.cache/sr2bit) for the same backend, tools, weights and tile")
    bu.set_defaults(func=cmd_build)

    up = sub.add_parser("upscale", help="upscale a photo (or a folder of them) of any size, tile by tile, through an "
                                        "artifact or the model",
                        description="Upscale an image with seamless overlapping tiles. The photo is read as it "
                                    "displays (EXIF orientation applied; the output's tag is 1), transparency, "
                                    "grayscale and 16-bit samples are kept, and the ICC profile and EXIF (with the new "
                                    "size) are copied. The output format follows its extension: PNG is written band by band "
                                    "(memory bounded by the tile), JPEG and WebP hold the whole output in memory "
                                    "(stated up front, limited by --max-memory). With an input folder every image in "
                                    "it is upscaled into the output folder, resumably. With --artifact the tiles run "
                                    "through the build's own runtime (ExecuTorch, LiteRT) at one of its tile sizes, "
                                    "the fastest for the photo within --max-memory (printed); "
                                    "otherwise through the PyTorch model (fake-quantized with --bounds). Bad input "
                                    "is one line on stderr and exit status 2; nothing half-written is left.")
    up.add_argument("input", type=Path, help="input image (PNG, JPEG, BMP, TIFF, WebP, ...) or folder of images")
    up.add_argument("output", type=Path,
                    help="output .png, .jpg/.jpeg or .webp (written to a temporary file, renamed when complete), or "
                         "the output folder for an input folder")
    up.add_argument("--artifact", type=Path, default=None, metavar="DIR", help="a `pipeline build` folder to run")
    up.add_argument("--weights", default=None, help="FP weights for the PyTorch path (default the shipped model)")
    up.add_argument("--bounds", type=Path, default=None, help="bounds file: run the fake-quantized model (PyTorch path)")
    up.add_argument("--scale", type=int, choices=(2, 3, 4), default=4, help="PyTorch path: upscaling factor (default 4)")
    up.add_argument("--tile", type=int, default=None,
                    help="LR tile side (default: with --artifact, the fastest of its sizes for this photo within "
                         "--max-memory, from the speeds its build measured, printed with the reason; 128 for the "
                         "PyTorch path)")
    up.add_argument("--overlap", type=int, default=None,
                    help="minimum LR overlap between tiles (default 16, or tile // 4 for tiles under 64: enough to keep "
                         "seams under 1/255, reports/upscale_photo.md); tiles start on the model's 8 px window grid, "
                         "so tile - overlap is rounded down to a multiple of 8")
    up.add_argument("--threads", type=int, default=None, help="runtime threads (default: the runtime's choice)")
    up.add_argument("--workers", type=int, default=None, metavar="N",
                    help="with --artifact: run tiles in N processes of one runtime thread each at once (1: in this "
                         "process with --threads). Default: whichever of the two the build measured faster for the "
                         "photo within --max-memory, N being the measured thread count (printed); the build "
                         "measures both (tile_speed in its manifest). Two workers took about 250 MB more than one "
                         "process at 128 px (reports/upscale_photo.md)")
    up.add_argument("--alpha", choices=("bicubic", "model"), default="bicubic",
                    help="how the alpha channel of a transparent image is upscaled: MATLAB bicubic (default) or the "
                         "model run on the alpha replicated to RGB; either way, fully transparent and fully opaque "
                         "regions stay so")
    up.add_argument("--bit-depth", type=int, choices=(8, 16), default=8,
                    help="bits per sample of the output; 16 needs a .png and keeps a 16-bit input's precision "
                         "(default 8; a 16-bit input then gets a note)")
    up.add_argument("--quality", type=int, default=None, metavar="1..100",
                    help="JPEG or WebP quality (default: JPEG 95, WebP lossless); not for PNG")
    up.add_argument("--max-memory", type=int, default=1024, metavar="MB",
                    help="memory cap (default 1024): with --artifact the tile size is the fastest whose measured peak "
                         "plus the photo's buffers fits; a JPEG or WebP output (not streamed) that needs more than "
                         "this is refused")
    up.add_argument("--format", choices=("png", "jpeg", "webp"), default=None,
                    help="input folder only: format of the outputs (default png)")
    up.add_argument("--recursive", action="store_true", help="input folder only: include images in subfolders "
                                                             "(the output folder mirrors them)")
    up.add_argument("--force", action="store_true",
                    help="input folder only: redo images whose output exists (default: skip them, so an interrupted "
                         "batch resumes)")
    up.add_argument("--quiet", action="store_true", help="no progress bar")
    up.set_defaults(func=cmd_upscale)

    pr = sub.add_parser("profile", help="latency, memory, accuracy and per-op time of build artifacts in their runtime",
                        description="Run each build folder's artifact in its own runtime on this host (ExecuTorch, "
                                    "LiteRT; Core ML only on a Mac: apps/ios/profile_coreml.py) and report warm-up, "
                                    "median, p90 and min latency over --runs, peak memory, the ratio against the FP32 "
                                    "artifact of the same backend measured in the same run, the paper's theoretical "
                                    "FLOP speed-up beside it, PSNR/SSIM of the artifact, and per-operator time where "
                                    "the runtime offers it (ETDump). Writes OUT.json, OUT.md and OUT.png.")
    pr.add_argument("builds", nargs="+", type=Path, metavar="ARTIFACT_DIR", help="`pipeline build` output folders")
    pr.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    pr.add_argument("--runs", type=int, default=10, help="timed runs per measurement (default 10)")
    pr.add_argument("--warmup", type=int, default=3, help="untimed runs before timing (default 3)")
    pr.add_argument("--data", nargs="+", type=Path, default=None,
                    help="benchmark folders to score the artifact on (default <data>/benchmark/Set5)")
    pr.add_argument("--no-accuracy", action="store_true", help="latency only, no PSNR/SSIM")
    pr.add_argument("--no-ops", action="store_true", help="skip the per-operator profile")
    pr.add_argument("--out", type=Path, default=Path("build/profile"),
                    help="output path without suffix (default build/profile -> .json, .md, .png; "
                         "reports/ holds only reports written on purpose)")
    pr.set_defaults(func=cmd_profile)
    return parser


_OWN_LOGGERS = ("pipeline", "calibration", "targets", "srcore")


def configure_logging(verbose: bool = False) -> None:
    """sr2bit's own messages from INFO up on stderr, other libraries' from WARNING up (everything from DEBUG if verbose).

    The root logger stays at WARNING: litert-torch logs through it at INFO ("Use JAX lowering: ..." per
    op type), which would otherwise print a dozen lines in every TFLite build. Like ``logging.basicConfig``,
    it leaves a process whose logging is already configured (root handlers: an application, pytest) alone.
    """
    if logging.root.handlers:
        return
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in _OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return args.func(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
