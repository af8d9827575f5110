"""Files and runs: atomic writes, safe loading, output checks and locks (files), and what a run is called and
writes (runs)."""
