"""What the web server process does besides running pages: which runs and live channels each
browser session holds (sessions.py), the live channel and its routes, and the lifespan that
starts the training workers once. It imports nothing from components/ or pages/."""
