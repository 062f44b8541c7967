"""Deep Learning Lab, served as one st.App: Streamlit's pages (pages/navigation.py), the live
channel's routes (server/routes.py), and a lifespan that starts the training workers once.

    streamlit run app.py        (or: make run)
"""

import streamlit as st

from server.lifespan import lifespan
from server.routes import routes

app = st.App("pages/navigation.py", routes=routes(), lifespan=lifespan)

if __name__ == "__main__":
    app.run()
