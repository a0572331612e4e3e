"""sales-etl's development tools, never deployed: the local stack (``devstack``,
``pgbouncer``), the demo, the mock-data generator, the host side of the Functions RPC that
drives the genuine worker in tests and the demo (``hostcall``, ``rpc/``), and
``local.settings.json`` for ``func start`` (``funcsettings``).

Installed from a checkout by ``make setup`` (``pip install -e . -e ./dev``); it adds the ``dev``,
``demo`` and ``generate`` commands to ``sales-etl`` through the ``sales_etl.commands`` entry
points. The function app, its deployment zip, its container image and the ``sales-etl``
wheel leave this package out.
"""
