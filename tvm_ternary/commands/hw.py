"""``tternary hw``: accelerator tools (vta_ext). Imports neither torch nor TVM."""

from __future__ import annotations

import json


def run_hw(parser, args) -> int:
    if args.hw_command == "disasm":
        return _disasm(args)
    if args.hw_command == "config":
        return _config(args)
    parser.parse_args(["hw", "--help"])  # no sub-command: show the hw help and exit
    return 2


def _disasm(args) -> int:
    from vta_ext import isa

    insns = isa.read_stream_file(args.file)
    for i, insn in enumerate(insns):
        line = f"{i:5d}: {isa.disasm(insn)}"
        if args.hex:
            line = f"{i:5d}: {isa.encode(insn):032x}  {isa.disasm(insn)}"
        print(line)
    return 0


def _config(args) -> int:
    from vta_ext import HwConfig

    cfg = HwConfig.load(args.hw)
    derived = {k: getattr(cfg, k) for k in (
        "inp_block_bytes", "wgt_block_bytes", "acc_block_bytes", "out_block_bytes",
        "par_block_bytes", "uop_depth", "inp_depth", "wgt_depth", "acc_depth", "par_depth",
        "macs_per_cycle")}
    print(json.dumps({"config": cfg.to_dict(), "derived": derived, "hash": cfg.hash}, indent=2))
    return 0
