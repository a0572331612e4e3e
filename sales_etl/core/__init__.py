"""The vocabulary every layer shares: typed errors and their one classifier, the reason
codes, redaction of secrets in text. Imports nothing of sales_etl outside core (the bottom
layer); no client library at import time."""
