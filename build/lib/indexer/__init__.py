"""Offline work: preparing datasets, training and evaluating CSCAN, building indexes, the job worker."""
