"""Azure Functions entry point (Python v2 model): bindings only, the work is in sales_etl.

Settings are read once, when the worker indexes this file. A value the host would refuse
leaves out only the function that uses it (an error naming the setting is logged), so the
other function keeps working; nothing read here may raise."""

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from sales_etl.app import triggers

app = func.FunctionApp()
bindings = triggers.bindings()

if bindings.blob_path is not None and bindings.source is not None:

    @app.blob_trigger(
        arg_name="client",
        path=bindings.blob_path,
        connection=bindings.connection,
        source=func.BlobSource(bindings.source),
    )
    def load_blob(client: blob.BlobClient) -> None:
        triggers.on_blob(client)


if bindings.schedule is not None:

    @app.timer_trigger(arg_name="timer", schedule=bindings.schedule, run_on_startup=False, use_monitor=True)
    def retry_sweep(timer: func.TimerRequest) -> None:
        triggers.on_timer(timer)
