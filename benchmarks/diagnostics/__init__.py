"""Diagnostics: scripts that explain where a search's time and CPUs go, with no target to meet."""
