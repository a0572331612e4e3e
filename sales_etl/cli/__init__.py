"""The thin command line: the group (commands), the file commands (files), the ledger and
folder commands (runs), the operator's commands (admin), what every command shares
(context), its one-line error hints (hints) and doctor. The top layer: may import every
other one, and the dev package (sales_etl_dev) lazily."""
