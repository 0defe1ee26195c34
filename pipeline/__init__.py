"""sr2bit pipeline: SwinIR-light model, data, metrics, evaluation and the `python -m pipeline` CLI."""
