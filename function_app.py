"""Azure Functions entry point (Python v2 model): bindings only, the work is in sales_etl."""

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from sales_etl import functions

app = func.FunctionApp()
bindings = functions.bindings()


@app.blob_trigger(arg_name="client", path=bindings.blob_path, connection=bindings.connection,
                  source=func.BlobSource(bindings.source))
def load_blob(client: blob.BlobClient) -> None:
    functions.on_blob(client)


@app.timer_trigger(arg_name="timer", schedule=bindings.schedule, run_on_startup=False,
                   use_monitor=True)
def retry_sweep(timer: func.TimerRequest) -> None:
    functions.on_timer(timer)
