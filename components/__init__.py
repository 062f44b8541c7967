"""Streamlit UI shared by the pages: controls generated from a Config, the live panel and a
run's final state (live.py, panel.js), page furniture (page.py) and the drawing canvas. The
figures they show come from figures/; the runs they start and stop belong to server/."""
