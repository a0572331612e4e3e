"""The pure stages over a file and its chunks: bytes to records (decode, scan, extract,
slowpath, records), the dataset spec types (spec), rules and expressions, transform,
protect, rejects and blob names. No environment, no clients, no SQL: imports only core and
stages (and numpy, pyarrow, cryptography)."""
