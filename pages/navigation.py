"""The script Streamlit runs for every page view: the navigation, built from the chapter registry.

It lives inside pages/, not beside it: Streamlit still treats a `pages/` folder beside the main
script as a legacy multipage app, and would then run a page's file directly when a deep link is
a fresh server's first request, bypassing this navigation. (Beside this script would be
pages/pages/, which does not exist.)
"""

import streamlit as st

from chapters import HOME, by_part
from components.live import preload

st.set_page_config(page_title="Deep Learning Lab", page_icon="🧪", layout="wide")
home = st.Page(HOME, title="Home", icon="🏠", default=True)
pages = {"Start": [home]} | {
    part: [st.Page(c.page, title=c.label, icon=c.icon, url_path=c.slug) for c in chapters]
    for part, chapters in by_part().items()
}
page = st.navigation(pages, expanded=True)  # every chapter listed: no "View 11 more" hiding half the course
with st.sidebar:  # hidden; placed where an empty element takes no room from the page
    preload()
page.run()
