"""``python -m sales_etl_dev.rpc``: compile function_rpc.proto (make setup runs it)."""

from . import compile_proto

print(compile_proto())
