"""Deep Learning Lab's chapter labs: pure PyTorch, never Streamlit (a test enforces it)."""
