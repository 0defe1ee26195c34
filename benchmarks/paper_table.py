"""Reproduce the layout of 2DQuant's Table 3: FP, bicubic and each PTQ method at 4/3/2 bits, ours beside the paper's.

    python -m benchmarks.paper_table --scale 4 --bits 4 3 2 --out reports/table3_x4.md \
        --bounds-dir reports/bounds [--weights W] [--data DIR ...] [--methods ...] [--dqc-preset cpu]

Every quantized row is calibrated here (bounds files are kept in ``--bounds-dir``) and evaluated
with the same fake-quant model and metric code as ``python -m pipeline eval --bounds``. The
paper's numbers (official SwinIR-light weights, DF2K calibration, GPU) come from
``benchmarks/paper_table3.txt``; ours use the weights named in the report, so compare the
*drop* from FP, not absolute values, unless the weights are the official ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from calibration.bounds import save_bounds
from calibration.config import DobiConfig, MinMaxConfig, PercentileConfig, QuantConfig
from calibration.dqc import DQC_PRESETS
from pipeline.calibrate import CalibrationConfig, run_calibration
from pipeline.cost import compression_ratio, flop_speedup
from pipeline.evaluate import bicubic_upscaler, evaluate, model_upscaler
from pipeline.plots import plot_calibration
from srcore.model import build_model
from srcore.paths import benchmark_dir, calib_dir
from srcore.weights import load_model

PAPER_FILE = Path(__file__).with_name("paper_table3.txt")

# method key -> (label in our table, label in the paper's table, calibrate() method, init config)
METHODS = {
    "minmax": ("MinMax", "MinMax", "minmax", MinMaxConfig()),
    "percentile": ("Percentile (0.01/99.99 %)", "Percentile", "percentile", PercentileConfig()),
    "dobi": ("DOBI (paper: upper-only for softmax/GELU)", "DOBI", "dobi", DobiConfig()),
    "dobi-code": ("DOBI (released code: all two-sided)", "DOBI", "dobi", DobiConfig(variant="code", all_two_sided=True)),
    "2dquant": ("2DQuant (DOBI + DQC)", "2DQuant", "2dquant", DobiConfig()),
}


def paper_numbers(scale: int) -> dict[tuple[str, str], dict[str, str]]:
    """(method, bits) -> {dataset: 'psnr/ssim'} from the paper's Table 3."""
    lines = [line for line in PAPER_FILE.read_text().splitlines() if line and not line.startswith("#")]
    header = [c.strip() for c in lines[0].split("|")]
    table = {}
    for line in lines[1:]:
        cells = dict(zip(header, (c.strip() for c in line.split("|"))))
        if int(cells["scale"]) == scale:
            table[(cells["method"], cells["bits"])] = {k: cells[k] for k in header[3:]}
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, choices=(2, 3, 4), default=4)
    parser.add_argument("--bits", type=int, nargs="+", default=[4, 3, 2], choices=(2, 3, 4, 8))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--dqc-bits", type=int, nargs="+", default=None,
                        help="bit widths that get the 2dquant row (default: all of --bits)")
    parser.add_argument("--weights", default=None, help="FP weights (default: the shipped model)")
    parser.add_argument("--data", nargs="+", type=Path, default=None, help="benchmark folders (default Set5 Set14)")
    parser.add_argument("--calib", nargs="+", type=Path, default=None, help="calibration LR folders")
    parser.add_argument("--dqc-preset", choices=sorted(DQC_PRESETS), default="cpu")
    parser.add_argument("--iters", type=int, default=None, help="override the preset's DQC iterations")
    parser.add_argument("--batch-size", type=int, default=None, help="override the preset's DQC batch size")
    parser.add_argument("--dqc-bf16", action=argparse.BooleanOptionalAction, default=False,
                        help="DQC forwards under bf16 autocast (CUDA)")
    parser.add_argument("--dqc-compile", action=argparse.BooleanOptionalAction, default=False,
                        help="torch.compile the Swin blocks during DQC")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--hardware", default=f"{platform.machine()} CPU ({torch.get_num_threads()} threads)",
                        help="description of the machine, for the report")
    parser.add_argument("--bounds-dir", type=Path, required=True, help="where the bounds files go")
    parser.add_argument("--out", type=Path, required=True, help="Markdown report (rewritten after every row)")
    parser.add_argument("--plot-dir", type=Path, default=None, help="coverage and loss plots of the 2dquant rows")
    args = parser.parse_args(argv)

    folders = args.data or [benchmark_dir("Set5"), benchmark_dir("Set14")]
    calib = args.calib or [calib_dir()]
    datasets = [f.name for f in folders]
    dqc = dataclasses.replace(DQC_PRESETS[args.dqc_preset], bf16=args.dqc_bf16, compile=args.dqc_compile, **{
        k: v for k, v in (("iterations", args.iters), ("batch_size", args.batch_size)) if v is not None})
    paper = paper_numbers(args.scale)

    model, info = load_model(args.weights, args.scale, args.device)
    fp = {r.dataset: r for r in evaluate(model_upscaler(model, args.device), folders, args.scale, progress=False)}
    report = Report(args, argv, info, calib, datasets, dqc, fp, paper)
    rows, timings = report.rows, report.timings  # (label, paper method, bits, ours, paper, note), Markdown lines
    rows.append(("FP32", "FP", "32", fp, paper.get(("FP", "32"), {}), ""))
    bic = {r.dataset: r for r in evaluate(bicubic_upscaler(args.scale), folders, args.scale, progress=False)}
    rows.append(("Bicubic", "Bicubic", "–", bic, paper.get(("Bicubic", "–"), {}), ""))
    # The fast initialisations first, DQC last: a run cut short still has a complete table of the rest.
    todo = [(bits, key) for bits in args.bits for key in args.methods if key != "2dquant"]
    todo += [(bits, "2dquant") for bits in args.bits
             if "2dquant" in args.methods and (not args.dqc_bits or bits in args.dqc_bits)]
    for bits, key in todo:
        label, paper_label, method, init = METHODS[key]
        model, info = load_model(args.weights, args.scale, args.device)
        start = time.perf_counter()
        config = CalibrationConfig(method, QuantConfig(bits, bits), init, dqc if method == "2dquant" else None)
        result = run_calibration(model, config, calib, weights_name=info.name, device=args.device, progress=False)
        seconds = time.perf_counter() - start
        path = save_bounds(result.bounds, args.bounds_dir / f"x{args.scale}-w{bits}a{bits}-{key}.safetensors")
        ours = {r.dataset: r for r in evaluate(model_upscaler(result.model, args.device), folders, args.scale,
                                               progress=False)}
        note = f"{len(result.dqc.losses)} it x batch {dqc.batch_size}, {result.dqc.selection}" if result.dqc else ""
        rows.append((label, paper_label, str(bits), ours, paper.get((paper_label, str(bits)), {}), note))
        speed = f", {len(result.dqc.losses) / result.dqc.wall_s:.2f} DQC it/s" if result.dqc else ""
        timings.append(f"| {label} | {bits} | {seconds:.0f} s{speed} | `{path}` |")
        print(f"W{bits}A{bits} {label}: " + ", ".join(f"{d} {ours[d].psnr:.2f}" for d in datasets), flush=True)
        if args.plot_dir and result.dqc:
            plot_calibration(result.model, result, args.plot_dir / f"w{bits}a{bits}-{key}")
        report.write()
    print("\n".join(report.write()))


@dataclasses.dataclass
class Report:
    """Everything the Markdown report shows; ``write`` runs after every row, so a long run is never lost."""

    args: argparse.Namespace
    argv: list[str] | None
    info: object
    calib: list[Path]
    datasets: list[str]
    dqc: object
    fp: dict
    paper: dict
    rows: list = dataclasses.field(default_factory=list)
    timings: list[str] = dataclasses.field(default_factory=list)

    def write(self) -> list[str]:
        return _render(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


def _render(args, argv, info, calib, datasets, dqc, fp, paper, rows, timings) -> list[str]:
    fp_model = build_model("light", args.scale)
    lines = [
        f"# 2DQuant Table 3 layout, SwinIR-light x{args.scale}: ours vs the paper",
        "",
        f"- ours: weights **{info.describe()}**; paper: official SwinIR-light weights (FP row shows the gap)",
        f"- command: `python -m benchmarks.paper_table {shlex.join(sys.argv[1:] if argv is None else argv)}`",
        f"- hardware: {args.hardware}; device {args.device}; torch {torch.__version__}",
        f"- calibration: {', '.join(str(c) for c in calib)}; DOBI/MinMax/Percentile from 32 seeded 64x64 crops "
        f"(seed 0); DQC preset `{args.dqc_preset}` ({dqc.iterations} it, batch {dqc.batch_size}, {dqc.schedule}, "
        f"betas {dqc.betas}, {dqc.loss_scaling} loss scaling), last step kept (no selection on a test set)",
        "- cells: PSNR (dB) / SSIM, Y channel, border = scale; Δ = change from our FP32 (ours, 3 decimals because "
        "our draft model's 4-bit differences are small) or from the paper's FP (paper)",
        "",
        "| method | bits | " + " | ".join(f"{d} ours | Δ | {d} paper | Δ" for d in datasets) + " | note |",
        "|---|---|" + "---|---|---|---|" * len(datasets) + "---|",
    ]
    paper_fp = paper.get(("FP", "32"), {})
    bits_order = ["32", "–"] + [str(b) for b in args.bits]
    labels = [m[0] for m in METHODS.values()]
    rows = sorted(rows, key=lambda r: (bits_order.index(r[2]), labels.index(r[0]) if r[0] in labels else -1))
    for label, _, bits, ours, theirs, note in rows:
        cells = []
        for d in datasets:
            o = ours[d]
            p = theirs.get(d, "n/a")
            p_fp = paper_fp.get(d)
            dp = f"{float(p.split('/')[0]) - float(p_fp.split('/')[0]):+.2f}" if "/" in p and p_fp else ""
            cells.append(f"{o.psnr:.3f}/{o.ssim:.4f} | {o.psnr - fp[d].psnr:+.3f} | {p} | {dp}")
        lines.append(f"| {label} | {bits} | " + " | ".join(cells) + f" | {note} |")
    lines += ["", "## Theoretical ratios (computed from the model, 2DQuant §6)", "",
              "| bits | compression | FLOP speed-up |", "|---|---|---|"]
    lines += [f"| {b} | {compression_ratio(fp_model, b):.2f}x | {flop_speedup(fp_model, b):.2f}x |" for b in args.bits]
    lines += ["", "## Calibration time and bounds files", "", "| method | bits | time | bounds file |", "|---|---|---|---|"]
    lines += timings
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    return lines


if __name__ == "__main__":
    main()
