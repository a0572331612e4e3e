"""sales-etl: sales CSV files from Azure Blob Storage into PostgreSQL, exactly once."""

__version__ = "0.1.0"
