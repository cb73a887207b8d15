"""great-expectations: the data and metric gates."""
