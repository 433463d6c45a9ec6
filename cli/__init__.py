"""The command line of iris-sweep, and the temporary Prefect server it runs beside a sweep."""
