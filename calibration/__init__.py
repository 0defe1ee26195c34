"""sr2bit calibration: quantizers, DOBI, DQC and the bounds file (2DQuant, arXiv 2406.06649)."""
