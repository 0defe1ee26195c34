"""sr2bit's ground floor, the super-resolution core: SwinIR-light, images, MATLAB-compatible bicubic, metrics, tiling,
data, checkpoints and weights. It imports nothing from calibration, targets or pipeline (tests/test_layers.py)."""
