"""Executors take the runs of a sweep that are not done and train them somewhere."""
