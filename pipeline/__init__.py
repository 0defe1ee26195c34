"""sr2bit orchestration: calibrate, build, evaluate, profile, upscale, train-fp, the Python API (:mod:`pipeline.api`) and the `python -m pipeline` CLI."""
