"""What the web server process does besides running pages: the navigation script, the live
channel and its routes, and the lifespan that starts the training workers once."""
