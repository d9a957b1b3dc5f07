"""The MLflow edge: the store (`store`), the tag names (`tags`), the driver's one writer (`writer`,
over `parent`, `trial_runs` and `spool`), reading back (`reader`, `readback`), `sync`."""
