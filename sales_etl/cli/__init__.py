"""The thin command line (commands, admin, context), its error hints and doctor. The top
layer: may import every other one, and the dev package (sales_etl_dev) lazily."""
