"""Figures and tables of trained runs: curves, metrics, samples, explanation figures, the report and the
cross-dataset table. Functions here draw and compute; the commands are in cli."""
