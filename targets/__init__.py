"""sr2bit deployment targets: one module per backend behind one small interface."""
