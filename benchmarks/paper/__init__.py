"""Helpers of ``benchmarks/reproduce_paper.py`` (the AdUE paper's Table 1 with uehead).

``config`` (datasets, methods, the paper's reference rows), ``args`` (option parsing), ``runs``
(one cached checkpoint per dataset x seed, read through :mod:`uehead.checkpoint`), ``aggregate``
(test metrics recomputed from the scores, over seeds) and ``markdown`` (the report).
"""
