"""One trial, without Ray or MLflow: its config, model, losses, mining, metrics, loop and figures."""
