"""The commands `tuner/cli.py` dispatches to, each with its parser; heavy imports stay inside
them."""
