"""Small training settings for the tests (a module with a unique name, importable from any test)."""
from uehead.training import BaselineConfig, HeadGridConfig

# A small grid and RDE cap keep end-to-end runs small; the full paper grid is the default.
SMALL_GRID = HeadGridConfig(lrs=(1e-3, 1e-5), epochs=(2, 4), alphas=(0.0, 1.0), betas=(0.01, 1.0))
SMALL_BASELINE = BaselineConfig(rde_max_rows=120, rde_components=8)
