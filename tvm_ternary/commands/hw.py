"""``tternary hw``: accelerator tools (vta_ext). Imports neither torch nor TVM."""

from __future__ import annotations

import json


def run_hw(parser, args) -> int:
    if args.hw_command == "disasm":
        return _disasm(args)
    if args.hw_command == "config":
        return _config(args)
    if args.hw_command == "sim":
        return _sim(args)
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


def _sim(args) -> int:
    import dataclasses
    from pathlib import Path

    from vta_ext import HwConfig
    from vta_ext.program import Program
    from vta_ext.sim.fsim import simulate

    cfg = HwConfig.load(args.hw)
    program = Program.load(args.program)
    result = simulate(program, cfg)
    summary = {"program": str(args.program), "hw": cfg.name, "hw_hash": cfg.hash,
               "instructions": len(program.insns), "totals": result.totals(),
               "leftover_tokens": result.leftover_tokens}
    print(json.dumps(summary, indent=2))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        report = dict(summary, per_instruction=[dataclasses.asdict(s) for s in result.stats])
        (out / "report.json").write_text(json.dumps(report, indent=1))
        Program(insns=program.insns, dram=result.dram).save(out / "result.npz")
    return 0
