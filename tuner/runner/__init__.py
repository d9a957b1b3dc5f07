"""The Ray Tune edge: a search assembled and run (`search`), one trial (`trial`), Tune's events
(`callback`)."""
