"""Figures and thin Streamlit renderers shared by the pages. Components never see a model:
they take numbers and arrays (or a runner's RunView) and draw them."""
