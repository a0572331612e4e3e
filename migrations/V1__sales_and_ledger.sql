-- The sales table and the load ledger.
-- Sensitive ids hold Fernet tokens (text: a token of a short id is ~100-140 characters)
-- and, beside each, a keyed HMAC-SHA256 blind index (bytea, 32 bytes) for look-ups and joins.
-- etl_run_id + source_line say where each row came from (no foreign key: a per-row check
-- would slow every load, and the ledger row commits in the same transaction anyway).

CREATE TABLE etl_runs (
    run_id          bigserial PRIMARY KEY,
    run_uuid        uuid        NOT NULL UNIQUE,
    dataset         text        NOT NULL,
    blob_path       text        NOT NULL,
    etag            text,
    content_sha256  text,
    attempt         integer     NOT NULL DEFAULT 1,
    trigger         text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('running', 'loaded', 'skipped', 'failed')),
    reason_code     text,
    error           text,
    rows_read       bigint      NOT NULL DEFAULT 0,
    rows_loaded     bigint      NOT NULL DEFAULT 0,
    rows_duplicate  bigint      NOT NULL DEFAULT 0,
    rows_rejected   bigint      NOT NULL DEFAULT 0,
    bytes_read      bigint      NOT NULL DEFAULT 0,
    rejects_path    text,
    unknown_columns text[],
    duplicate_of    bigint      REFERENCES etl_runs (run_id),
    dataset_version text,
    app_version     text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    seconds         double precision,
    CONSTRAINT etl_runs_conservation CHECK (
        status <> 'loaded' OR rows_read = rows_loaded + rows_duplicate + rows_rejected)
);
CREATE INDEX etl_runs_blob ON etl_runs (dataset, blob_path, etag) WHERE status = 'loaded';
CREATE INDEX etl_runs_content ON etl_runs (dataset, content_sha256) WHERE status = 'loaded';
CREATE INDEX etl_runs_started ON etl_runs (started_at DESC);

CREATE TABLE sales (
    sale_id            bigserial      PRIMARY KEY,
    transaction_id     varchar(100)   NOT NULL UNIQUE,
    customer_id        text           NOT NULL,
    product_id         text           NOT NULL,
    store_id           text           NOT NULL,
    quantity           integer        NOT NULL CHECK (quantity > 0),
    unit_price         numeric(10, 2) NOT NULL CHECK (unit_price >= 0),
    discount           numeric(5, 4)  NOT NULL DEFAULT 0 CHECK (discount BETWEEN 0 AND 1),
    total_amount       numeric(12, 2) NOT NULL CHECK (total_amount >= 0),
    payment_method     varchar(50)    NOT NULL,
    sale_date          date           NOT NULL,
    sale_time          time           NOT NULL,
    customer_id_hash   bytea          NOT NULL,
    product_id_hash    bytea          NOT NULL,
    store_id_hash      bytea          NOT NULL,
    etl_run_id         bigint         NOT NULL,  -- the ledger run that loaded the row
    source_line        integer        NOT NULL,  -- its line in that run's file (lineage)
    created_at         timestamptz    NOT NULL DEFAULT now()
);
CREATE INDEX sales_sale_date ON sales (sale_date);
CREATE INDEX sales_customer_id_hash ON sales (customer_id_hash);
CREATE INDEX sales_product_id_hash ON sales (product_id_hash);
CREATE INDEX sales_store_id_hash ON sales (store_id_hash);
