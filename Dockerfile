# The function app on the official Azure Functions Python 3.13 base image (the worker runtime
# itself comes from requirements.txt: azure-functions-runtime, pinned).
# Built by docker-compose.yml; deployable to a container-based Function App as is.
FROM mcr.microsoft.com/azure-functions/python:4-python3.13

ENV AzureWebJobsScriptRoot=/home/site/wwwroot \
    AzureFunctionsJobHost__Logging__Console__IsEnabled=true \
    PYTHONDONTWRITEBYTECODE=1

COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt

COPY function_app.py host.json /home/site/wwwroot/
COPY sales_etl /home/site/wwwroot/sales_etl
COPY migrations /home/site/wwwroot/migrations
