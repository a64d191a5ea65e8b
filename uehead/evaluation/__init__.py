"""Evaluation stage (torch-free): metrics of uncertainty scores, ``uehead evaluate``, plots.

    metrics   ROC-AUC, PRR, AURC, ECE, Brier, accuracy, tables (numpy only)
    evaluate  predict a labelled split through the runtime and score every uncertainty score
    plots     reliability diagrams and risk-coverage curves (matplotlib, the ``[eval]`` extra)

Every uncertainty score is **higher = more uncertain**; every metric here says whether higher is better.
"""
