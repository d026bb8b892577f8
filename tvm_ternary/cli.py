"""The ``tternary`` command. ``--help`` imports neither torch nor TVM, so it answers at once."""

from __future__ import annotations

import argparse
import sys

MODELS = ("digits_cnn", "digits_mlp")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", "-o", default="out/quantize", help="report folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default: %(default)s)")
    verbosity = p.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="print more")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


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
    _common(q)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "quantize":
        from tvm_ternary.commands.quantize import run_quantize
        return run_quantize(args)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
