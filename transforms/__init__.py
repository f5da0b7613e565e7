"""Data plane: pure conversion functions, thin Beam wrappers, storage helpers. No Prefect imports."""
