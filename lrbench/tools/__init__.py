"""Tools beside the sweep: the speed benchmark (bench) and the learning-rate range test (lrfind)."""
