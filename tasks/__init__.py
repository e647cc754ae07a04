"""Prefect tasks over the zhasr library: one module per stage, each adding MLflow logging and artifact paths."""
