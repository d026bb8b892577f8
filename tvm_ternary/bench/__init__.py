"""Benchmark helpers behind ``scripts/bench_cpu.py``: the machine's roofline
(``bandwidth``, ``mac_peak``, ``roofline``), timing with hot or cold caches (``timing``),
peers measured in the same run (``torch_peers``, ``ggml_peer``) and the per-layer time
breakdown of a compiled model (``layer_profile``)."""
