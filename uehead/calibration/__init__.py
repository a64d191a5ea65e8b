"""From score to decision: calibrated P(error), risk-controlled abstention and conformal
prediction sets, fitted once by ``uehead calibrate`` and stored in the bundle.

Modules (numpy and the stdlib only, except :mod:`.calibrate_bundle`, which predicts through the
torch-free runtime):

* :mod:`.isotonic`: isotonic map score -> P(error) (pool adjacent violators; Zadrozny and Elkan 2002);
* :mod:`.risk`: Learn then Test thresholds with fixed-sequence testing and an exact binomial tail
  (Angelopoulos et al. 2021);
* :mod:`.conformal`: split conformal sets, LAC (Sadinle et al. 2019) and APS (Romano et al.
  2020), marginal or class-conditional (Mondrian);
* :mod:`.apply`: the ``calibration.json`` section, :func:`load_calibration` and
  :meth:`Calibration.decide` (the runtime's apply path);
* :mod:`.fit`: every procedure fitted on one set of rows, and the report;
* :mod:`.calibrate_bundle`: :func:`calibrate`, behind ``uehead calibrate``.

Every score is **higher = more uncertain**; a row is accepted when its score is at most the
certified threshold. The names below are imported lazily, so importing the apply path never
loads onnxruntime.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "Calibration": "uehead.calibration.apply",
    "load_calibration": "uehead.calibration.apply",
    "read_calibration": "uehead.calibration.apply",
    "fit_calibration": "uehead.calibration.fit",
    "calibrate": "uehead.calibration.calibrate_bundle",
    "CalibrationResult": "uehead.calibration.calibrate_bundle",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'uehead.calibration' has no attribute {name!r}")
