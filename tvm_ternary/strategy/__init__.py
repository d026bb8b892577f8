"""Per-target implementations (compute + schedule) of the ternary Relax operators."""
