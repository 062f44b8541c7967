"""The names this app gives Streamlit: each widget's key and each entry it keeps in
st.session_state, made here from an experiment's run key (chapters.run_key).

Widget keys are "<run key>-<name>" (the browser tests find a widget by its `st-key-…` class);
the app's own state entries are "<run key>.__<what>", a form no widget key takes.
"""

from __future__ import annotations


def widget_key(key: str, name: str) -> str:
    """The key of a widget of experiment `key`: its Train button, a control, a chart."""
    return f"{key}-{name}"


def state_key(key: str, what: str) -> str:
    """The session-state entry where experiment `key` keeps `what` (its config, its final
    figures, the notices of the link it was opened with)."""
    return f"{key}.__{what}"
