"""`metrics-agg demo`: planned app writes (`writes`), the run and its printout (`run`), and
the direct count it is checked against (`truth`, independent of the package's counter).
"""
