"""The PostgreSQL edge: connections, the ledger, loading (COPY text, the fast path and the
staged merge), migrations, key rotation, schema checks and look-ups. The only place SQL is
written. May import core, stages, config and datasets (never storage)."""
