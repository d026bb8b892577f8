"""The instruction builder of a layer scheduled with virtual threads (``Schedule.virtual_threads``
= 2, the old VTA's ``cthread``): the walked TIR (``tir_walk``) runs a group of output tiles,
one per thread, whose statements ``InjectVirtualThread`` interleaved.

Per reduction step of a group: the input rectangle, which every thread reads, is loaded
once; then each thread's weight blocks into that thread's weight slots; then each thread's
GEMM into that thread's accumulator slot, in the TIR's order. One reordering is the
builder's: a thread's epilogue (parameter load, residual load, ALU, STOREs) follows its own
last GEMM rather than the last GEMM of every thread, so an overlapped ALU of thread 0 runs
under thread 1's last GEMM (the ALU unit runs one instruction at a time: two ALUs in a row
would stall the GEMMs behind the second); the threads' parameter loads go before the last
step's loads, so that the GEMM waiting for its weights also orders the parameters before
the ALU (an overlapped ALU's own token wait does not order the compute instructions after
it: ``sim/ordering.py``). Because the threads own separate weight and
accumulator entries, the load module fills thread 1's weights while the GEMM core runs
thread 0's step, and the next step's thread-0 weights while thread 1's GEMM runs: the
dependencies between the two threads' uses of one queue are the token protocol's
(``tokens.Tokens``), as the old VTA's coproc_dep_push/pop between its virtual threads.

Buffer layout: the input slots are shared; thread k's weight, accumulator and (when not all
resident) parameter entries follow thread k-1's (``schedule.misfit`` checks they fit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..isa import Load, MemType
from .emit import ACCUMULATE, LayerEmitter, _Slots
from .tiling import Span, Tile, tile_inputs


@dataclass
class _Thread:
    """One virtual thread's own buffer entries and the readers of its slots."""

    index: int
    acc: _Slots
    wgt: _Slots
    acc_entry0: int
    wgt_entry0: int
    par_entry0: int
    last_alu: int | None = None


@dataclass
class _Open:
    """A thread's tile while its steps are being issued."""

    thread: _Thread
    tile: Tile
    slot: int
    acc_base: int
    out_base: int
    acc_of: list
    loops: dict
    gemms: list = field(default_factory=list)  # every GEMM writing the tile's accumulators
    initialized: set = field(default_factory=set)


class ThreadedEmitter(LayerEmitter):
    """``LayerEmitter`` whose unit of emission is a group of tiles, one per virtual thread."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        n, vt, fp = self.s.slots, self.s.virtual_threads, self.fp
        self.threads = [_Thread(k, _Slots(n, fp.acc), _Slots(n, fp.wgt), k * n * fp.acc,
                                k * n * fp.wgt, k * self.s.tile_out_blocks)
                        for k in range(vt)]
        self._current: _Thread | None = None
        self._last_of_group = False
        self._waited = {"l2c": -1, "c2s": -1}  # the newest producer a consumer waited for

    # ------------------------------------------------------------------ hooks of LayerEmitter

    def _par_entry0(self) -> int:
        return self._current.par_entry0

    def _epilogue_overlaps(self) -> bool:
        """A thread's ALU may run under what follows when that is another thread's epilogue
        (the ALU unit runs one at a time, and it touches only its own thread's entries) or
        when the thread's next GEMMs use its other accumulator slot."""
        return self.s.slots == 2 or not self._last_of_group

    # ------------------------------------------------------------------ a group of tiles

    def group(self, tiles: list[Tile]) -> int:
        """Issue one thread group (``tiles[k]`` on thread k); the index of its last STORE."""
        opened = [self._open(self.threads[k], t) for k, t in enumerate(tiles)]
        steps = tiles[0].in_steps
        for step in steps[:-1]:
            self._step(opened, step)
        pars = [self._on_thread(o, False, self._load_params, o.tile)
                if self.epilogue != ACCUMULATE else None for o in opened]
        closed = []
        self._step(opened, steps[-1], after=lambda o: closed.append(self._on_thread(
            o, o is opened[-1], self._close, o, pars[opened.index(o)])))
        return closed[-1]

    def _on_thread(self, o: _Open, last_of_group: bool, fn, *args):
        """``fn(*args)`` with the emitter's parameter entries and last ALU those of o's thread."""
        self._current, self._last_of_group = o.thread, last_of_group
        self._last_alu = o.thread.last_alu
        out = fn(*args)
        o.thread.last_alu = self._last_alu
        return out

    def _ready(self, queue: str, producer: int | None, consumer: int) -> None:
        """``consumer`` reads what ``producer`` wrote (``tokens.Tokens.ready``). Both modules
        run in order and the threads interleave: a producer at or before one its consumer's
        module already waited for needs no token, so pushes and pops pair up in order."""
        if producer is not None and producer > self._waited[queue]:
            self.tokens.ready(queue, producer, consumer)
            self._waited[queue] = producer

    def _writes_accumulators(self, o: _Open, gemm: int) -> None:
        """A GEMM of o's tile; the first one overwrites what the slot's last STOREs read
        when the accumulators themselves are stored (registered in program order, so the
        two threads' waits pair up with their STOREs' pushes)."""
        if not o.gemms and self.epilogue == ACCUMULATE:
            self.tokens.free("s2c", o.thread.acc.reader[o.slot], gemm)
        o.gemms.append(gemm)

    def _open(self, th: _Thread, t: Tile) -> _Open:
        """Claim the thread's accumulator slot; the reset GEMM of output blocks that no step
        has a weight block for."""
        slot = th.acc.claim(t)
        acc_base = th.acc_entry0 + slot * th.acc.size
        o = _Open(th, t, slot, acc_base, *self._tile_frame(t, acc_base))
        reset = self._reset_empty_blocks(t, o.acc_of, o.loops)
        if reset is not None:
            self._writes_accumulators(o, reset)
        return o

    def _step(self, opened: list[_Open], step: Span, after=None) -> None:
        """The shared input load, each thread's weight load, each thread's GEMM, each
        followed by ``after(thread's tile)`` when given (also for a thread without GEMM)."""
        p = self.p
        active = [(o, *self.weights.where[o.tile.weight_key(step)]) for o in opened]
        active = [(o, wfirst, entries) for o, wfirst, entries in active if entries]
        if not active:  # every weight block of the step is zero in every thread
            for o in opened if after else ():
                after(o)
            return
        t0 = active[0][0].tile
        ikey = t0.input_key(step)
        rows, cols = tile_inputs(p, t0)
        islot = self.inp.find(ikey)
        last_inp = None
        if islot is None:
            islot = self.inp.claim(ikey)
            loads = self._load_inputs(t0, step, islot * self.inp.size, rows, cols)
            self.tokens.free("c2l", self.inp.reader[islot], loads[0])
            last_inp = loads[-1]
        wslots, wloads = [], []
        for o, wfirst, entries in active:
            th, wkey = o.thread, o.tile.weight_key(step)
            wslot, load = th.wgt.find(wkey), None
            if wslot is None:
                wslot = th.wgt.claim(wkey)
                load = self.emit(Load(mem=MemType.WGT,
                                      sram_base=th.wgt_entry0 + wslot * th.wgt.size,
                                      dram_base=self.regions.wgt + wfirst, x_size=len(entries),
                                      x_stride=len(entries)))
                self.tokens.free("c2l", th.wgt.reader[wslot], load)
            wslots.append(wslot)
            wloads.append(load)
        issued = {id(o): (entries, wslot, wload)
                  for (o, _, entries), wslot, wload in zip(active, wslots, wloads)}
        for o in opened:
            if id(o) in issued:
                entries, wslot, wload = issued[id(o)]
                gemm = self._thread_gemm(o, entries, islot, wslot, rows, cols)
                self._ready("l2c", max((i for i in (last_inp, wload) if i is not None),
                                       default=None), gemm)
                self.inp.reader[islot] = gemm
                o.thread.wgt.reader[wslot] = gemm
            if after:
                after(o)

    def _thread_gemm(self, o: _Open, entries: list, islot: int, wslot: int, rows,
                     cols) -> int:
        """The GEMM of one thread's step: the shared input slot, the thread's weight slot."""
        th = o.thread
        gemm = self._gemm(entries, islot * self.inp.size, th.wgt_entry0 + wslot * th.wgt.size,
                          rows, cols, o.acc_of, o.loops, o.initialized)
        self._writes_accumulators(o, gemm)
        return gemm

    def _close(self, o: _Open, par_load: int | None) -> int:
        """The thread's epilogue, as ``LayerEmitter._tile`` ends a tile; its last STORE."""
        if self.epilogue == ACCUMULATE:  # its first GEMM freed the slot (_writes_accumulators)
            return self._store_accumulator_tile(o.tile, o.thread.acc, o.slot, o.acc_base,
                                                o.gemms[-1])
        return self._finish_tile(o.tile, o.thread.acc, o.slot, o.acc_of, o.out_base, par_load)
