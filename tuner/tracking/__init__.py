"""The MLflow edge: the store (`store`), the driver's one writer (`writer`), reading back (`reader`), `sync`."""
