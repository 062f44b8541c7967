"""Pure figure functions: numbers and arrays in, plain-dict plotly figures out.

They run in the training worker, where a run's snapshots are made (its live frames), and in the
server once the run has ended (its final state), so both draw the same figures. They never see a
model and import nothing of the lab: no Streamlit, no torch, no labs, components or server.

- plot.py: the building blocks (traces, layout, the explicit template); one module per kind of
  picture beside it (curves, images, layers, landscape, graph, sequences, attention, compare).
- record.py: what a view reads off a run (its metric rows, curves, layer statistics, pictures).
- variants.py: how a side-by-side run names each variant's numbers.
- views/: what each chapter shows while it trains: a layout and one function of the run.
"""
