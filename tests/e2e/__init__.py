"""End-to-end tests: real Prefect server, worker and Dask processes on loopback."""
