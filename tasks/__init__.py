"""Thin Prefect tasks over the irismodel library: names, retries and logging live here."""
