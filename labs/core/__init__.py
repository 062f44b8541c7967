"""The run engine, and what two or more chapters share (tests/test_layers.py holds it so).

The engine, how any lab runs: contract.py (what a chapter provides), config.py (knobs),
control.py (Stop, steps, curve points), divergence.py, snapshot.py, history.py, frames.py (live
figures), driver.py (one way to drive a loop), runner.py (a learner's run: budget, queue,
executor), slots.py (fair turns), workers.py (the process pool), budget.py, failures.py, device.py,
questions.py.

Shared by chapters: data.py (offline datasets), hooks.py (activations and gradients),
attribution.py (Captum), compare.py (side by side), mlp.py (the deep MLP of chapters 4-6),
phases.py (train, then analyse: 18-19), projection.py (learned vectors on a plane: 10, 11, 12b).
"""
