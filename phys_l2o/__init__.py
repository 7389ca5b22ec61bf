"""phys-l2o."""
