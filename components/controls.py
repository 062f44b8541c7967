"""Controls generated from a chapter's Config metadata, synced with the URL.

The first time a session opens a page, settings in the URL (a shared link) are read through
`from_params`, which clamps or replaces bad values; what it changed is shown as a notice. After
that the URL follows the controls, so the address bar is always a link to this run's settings.
"""

from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st

from chapters import link_prefix, part_of
from components.keys import state_key, widget_key
from labs.core.config import Knob, coerce_value, from_params, knobs, log_ladder, to_params


def config_controls(cls, key: str, container=None, exclude: tuple = ()):
    """Draw one control per knob of `cls` in `container`; return the Config they describe.
    On a page with several experiments, each reads and writes its own "<part>." link settings."""
    container = container or st.sidebar
    prefix = link_prefix(part_of(key))
    _read_link_once(cls, key, prefix)
    saved = st.session_state.get(state_key(key, "cfg"))  # survives leaving the page; widgets do not
    values = {}
    for name, k, default in knobs(cls):
        if name in exclude:
            continue
        wkey = widget_key(key, name)
        if wkey not in st.session_state:
            st.session_state[wkey] = getattr(saved, name) if saved is not None else default
        values[name] = _control(container, k, default, wkey)
    cfg = cls(**values)
    st.session_state[state_key(key, "cfg")] = cfg
    _write_link(cfg, prefix)
    return cfg


SLIDER_POSITIONS = 10_000  # more than a slider's width can point at: a number box instead


def _control(container, k: Knob, default, wkey: str):
    label = k.labels or {}
    if isinstance(default, bool):
        return container.toggle(k.label, help=k.help, key=wkey)
    if k.multi:
        return tuple(
            container.multiselect(
                k.label, k.choices, help=k.help, key=wkey, format_func=lambda c: label.get(c, str(c))
            )
        )
    if k.choices is not None:
        return container.selectbox(
            k.label, k.choices, help=k.help, key=wkey, format_func=lambda c: label.get(c, str(c))
        )
    if k.log:
        return container.select_slider(
            k.label, log_ladder(k.lo, k.hi), help=k.help, key=wkey, format_func=lambda v: f"{v:g}"
        )
    kind = int if isinstance(default, int) else float
    if kind is int and (k.hi - k.lo) / (k.step or 1) > SLIDER_POSITIONS:  # a number typed, not picked
        return container.number_input(
            k.label, int(k.lo), int(k.hi), step=int(k.step or 1), help=k.help, key=wkey
        )
    return container.slider(k.label, kind(k.lo), kind(k.hi), step=kind(k.step), help=k.help, key=wkey)


def saved_config(key: str):
    """The Config the controls of `key` described at the last script run."""
    return st.session_state[state_key(key, "cfg")]


def set_control(cls, key: str, name: str, value) -> None:
    """Set one control from code (e.g. "use suggested learning rate"), validated like a link.
    Call it from a button's on_click, before the control is drawn."""
    k = next(kn for n, kn, _ in knobs(cls) if n == name)
    default = next(d for n, _, d in knobs(cls) if n == name)
    st.session_state[widget_key(key, name)] = coerce_value(name, k, default, value)[0]


def _read_link_once(cls, key: str, prefix: str) -> None:
    marker = state_key(key, "link_read")
    if marker in st.session_state:
        return
    st.session_state[marker] = True
    raw = {k: st.query_params.get(k) for k in st.query_params}
    cfg, notices = from_params(cls, raw, prefix)
    for name, _, _ in knobs(cls):
        st.session_state[widget_key(key, name)] = getattr(cfg, name)
    st.session_state[state_key(key, "notices")] = notices


def link_notices(key: str) -> None:
    """Say which settings of the opened link were out of range or invalid, and what was used.
    A notice quotes what the link held, so it is escaped: a link must not put a clickable link,
    an image or coloured text on a classmate's page."""
    notices = st.session_state.get(state_key(key, "notices")) or []
    if notices:
        listed = "\n".join(f"- {literal(n)}" for n in notices)
        st.warning("Some settings in this link were adjusted:\n\n" + listed, icon="🔧")


MARKDOWN_SPECIALS = set("\\`*_{}[]()<>#+-.!|~$:&")  # markdown, LaTeX ($), Streamlit's :red[…] and :icon:


def literal(text: str) -> str:
    """`text` as markdown that shows exactly these characters and makes nothing of them."""
    return "".join("\\" + c if c in MARKDOWN_SPECIALS else c for c in text)


def _write_link(cfg, prefix: str) -> None:
    wanted = to_params(cfg, prefix)
    for name, _, _ in knobs(type(cfg)):
        if prefix + name in st.query_params and prefix + name not in wanted:
            del st.query_params[prefix + name]
    for k, v in wanted.items():
        if st.query_params.get(k) != v:
            st.query_params[k] = v


def share_link(*configs: tuple) -> None:
    """The full link to these settings, to paste to a classmate (the seed included).
    Pass (cfg, run key) pairs; a page with several experiments shares them all in one link."""
    base = (st.context.url or "").split("?")[0]
    params = {}
    for cfg, key in configs:
        params |= to_params(cfg, link_prefix(part_of(key)))
    with st.sidebar.expander("Share this run"):
        st.caption("Anyone opening this link gets the same settings and seed, so the same run.")
        st.code(f"{base}?{urlencode(params)}" if params else base, language=None)
