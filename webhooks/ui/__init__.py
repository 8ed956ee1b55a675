"""The operator web inbox: server-rendered pages, hand-written JS and CSS (no build step)."""
