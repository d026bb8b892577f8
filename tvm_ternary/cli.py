"""The ``tternary`` command. ``--help`` imports neither torch nor TVM, so it answers at once."""

from __future__ import annotations

import argparse
import sys

MODELS = ("digits_cnn", "digits_mlp")


def _common(p: argparse.ArgumentParser, default_out: str, seed_help: str | None = None,
            progress: bool = True) -> None:
    """--out; --seed where the command draws random numbers; -q where it shows progress bars."""
    p.add_argument("--out", "-o", default=default_out, help="report folder (default: %(default)s)")
    if seed_help:
        p.add_argument("--seed", type=int, default=0, help=f"{seed_help} (default: %(default)s)")
    if progress:
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tternary",
        description="Ternary neural networks: ternarize PyTorch models, compile them with TVM "
                    "for CPUs and a VTA-style accelerator.",
        epilog="Run 'tternary COMMAND --help' for a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    q = sub.add_parser(
        "quantize", help="train, ternarize, calibrate and freeze a digits model; report accuracy",
        description="Train a float model on scikit-learn's digits, ternarize it with METHOD, "
                    "fine-tune, calibrate and freeze it, and report the accuracy of the float, "
                    "fake-quant and integer (numpy reference) models.")
    q.add_argument("--model", choices=MODELS, default="digits_cnn")
    q.add_argument("--method", default="twn",
                   help="twn, ttq, tgauss, absmean, fatnn, sparse, ec2t or teacher_student "
                        "(default: %(default)s)")
    q.add_argument("--act", default="default", help="activation quantizer: int8, ternary, none, or "
                   "the method's default")
    q.add_argument("--epochs", type=int, default=30, help="float training epochs (default: %(default)s)")
    q.add_argument("--qat-epochs", type=int, default=20, help="ternary fine-tuning epochs (default: %(default)s)")
    _common(q, "out/quantize", seed_help="training seed")

    cp = sub.add_parser("compile", help="compile an exported frozen model (.pt2) with TVM",
                        description="Import a frozen ternary model saved by 'tternary quantize' "
                                    "into TVM Relax, build it for the target, check it against "
                                    "the exported integer model, and write model.tar.")
    cp.add_argument("model_file", help="frozen model from 'tternary quantize' (frozen.pt2)")
    cp.add_argument("--target", default="cpu", choices=("cpu", "vta"),
                    help="'cpu' (the detected host CPU; default) or 'vta' (the accelerator, "
                         "simulated; reports cycles, utilization, DRAM bytes and energy)")
    cp.add_argument("--hw", default="default",
                    help="accelerator configuration for --target vta: a name in vta_ext/configs "
                         "or a JSON path (default: %(default)s)")
    _common(cp, "out/compile", seed_help="seed of the random inputs the compiled model is checked on",
            progress=False)

    rn = sub.add_parser("run", help="run a compiled model on the digits test split",
                        description="Load model.tar from 'tternary compile', classify the digits "
                                    "test split, report accuracy and latency (min / median).")
    rn.add_argument("compiled", help="compiled model (model.tar)")
    _common(rn, "out/run")
    _add_hw(sub)
    return parser


def _add_hw(sub) -> None:
    hw = sub.add_parser("hw", help="accelerator tools: disassemble instruction streams, show configs",
                        description="Tools for the VTA-style accelerator (vta_ext): ISA and "
                                    "hardware configurations. See docs/isa.md.")
    hw_sub = hw.add_subparsers(dest="hw_command", metavar="HW_COMMAND")
    dis = hw_sub.add_parser("disasm", help="disassemble a binary instruction stream file",
                            description="Print one line per instruction of a binary instruction "
                                        "stream file (format: docs/isa.md, 'Instruction stream "
                                        "file').")
    dis.add_argument("file", help="instruction stream file (magic TTVTAISA)")
    dis.add_argument("--hex", action="store_true", help="also print each 128-bit word in hex")
    sim = hw_sub.add_parser("sim", help="run a program file on the functional simulator",
                            description="Run a program file (Program.save: instructions + DRAM "
                                        "image) on the functional simulator and print its "
                                        "statistics; with --out, also write report.json and "
                                        "result.npz (the program with the final DRAM image).")
    sim.add_argument("program", help="program file (.npz written by vta_ext.program.Program.save)")
    sim.add_argument("--hw", default="default", help="HwConfig name or JSON path (default: %(default)s)")
    sim.add_argument("--out", "-o", default=None, help="report folder (default: print only)")
    cfg = hw_sub.add_parser("config", help="print a hardware configuration with derived sizes",
                            description="Print a HwConfig (a packaged name or a JSON path) as JSON "
                                        "with its derived sizes and hash.")
    cfg.add_argument("hw", nargs="?", default="default",
                     help="configuration name or JSON path (default: %(default)s)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from tvm_ternary.errors import TernaryError

    try:
        return _dispatch(parser, args)
    except TernaryError as err:  # bad input: one clear line, no traceback
        print(f"tternary {args.command}: error: {err}", file=sys.stderr)
        return 2


def _dispatch(parser: argparse.ArgumentParser, args) -> int:
    if args.command == "quantize":
        from tvm_ternary.commands.quantize import run_quantize
        return run_quantize(args)
    if args.command == "compile":
        from tvm_ternary.commands.compile_run import run_compile
        return run_compile(args)
    if args.command == "run":
        from tvm_ternary.commands.compile_run import run_run
        return run_run(args)
    if args.command == "hw":
        from tvm_ternary.commands.hw import run_hw
        return run_hw(parser, args)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
