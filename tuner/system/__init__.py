"""Operating-system helpers: processes and signals, full disks, credentials in text, Tune's
storage directory and its guard. No torch, Ray or MLflow."""
