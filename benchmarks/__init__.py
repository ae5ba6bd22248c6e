"""The project's benchmarks: ``python -m benchmarks NAME`` runs one and records it (see ``runner``);
``python -m benchmarks render`` writes ``RESULTS.md`` and the README's table from the records."""
