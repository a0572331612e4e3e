-- The rest of the example model: suppliers, products, customers, stores.
-- Sensitive ids hold Fernet tokens; their blind index (same key as sales) is the unique
-- business key, so sales.<x>_id_hash joins <x>s.<x>_id_hash without decrypting.
-- Foreign keys are not declared between the tables: files of different datasets arrive
-- in any order (a sale may land before its customer); the joins are on the hashes.

CREATE TABLE suppliers (
    id                bigserial    PRIMARY KEY,
    supplier_id       text         NOT NULL,
    supplier_id_hash  bytea        NOT NULL UNIQUE,
    name              varchar(200) NOT NULL,
    country           varchar(100),
    contact_email     varchar(254) UNIQUE,
    etl_run_id        bigint       NOT NULL,
    source_line       integer      NOT NULL,
    updated_at        timestamptz  NOT NULL DEFAULT now()
);

CREATE TABLE products (
    id                bigserial      PRIMARY KEY,
    product_id        text           NOT NULL,
    product_id_hash   bytea          NOT NULL UNIQUE,
    name              varchar(200)   NOT NULL,
    category          varchar(100),
    current_price     numeric(10, 2) NOT NULL CHECK (current_price >= 0),
    cost              numeric(10, 2) CHECK (cost >= 0),
    supplier_id       text,
    supplier_id_hash  bytea,
    stock             integer        NOT NULL DEFAULT 0 CHECK (stock >= 0),
    etl_run_id        bigint         NOT NULL,
    source_line       integer        NOT NULL,
    updated_at        timestamptz    NOT NULL DEFAULT now()
);
CREATE INDEX products_supplier_id_hash ON products (supplier_id_hash);

CREATE TABLE customers (
    id                bigserial    PRIMARY KEY,
    customer_id       text         NOT NULL,
    customer_id_hash  bytea        NOT NULL UNIQUE,
    first_name        varchar(100) NOT NULL,
    last_name         varchar(100) NOT NULL,
    email             varchar(254) UNIQUE,
    phone             varchar(40),
    join_date         date,
    country           varchar(100),
    city              varchar(100),
    etl_run_id        bigint       NOT NULL,
    source_line       integer      NOT NULL,
    updated_at        timestamptz  NOT NULL DEFAULT now()
);

CREATE TABLE stores (
    id                bigserial    PRIMARY KEY,
    store_id          text         NOT NULL,
    store_id_hash     bytea        NOT NULL UNIQUE,
    name              varchar(200) NOT NULL,
    city              varchar(100),
    country           varchar(100),
    etl_run_id        bigint       NOT NULL,
    source_line       integer      NOT NULL,
    updated_at        timestamptz  NOT NULL DEFAULT now()
);

-- The loader may insert, and update in place (the upsert write mode), but never delete.
GRANT SELECT, INSERT, UPDATE ON suppliers, products, customers, stores TO sales_loader;
GRANT USAGE ON SEQUENCE suppliers_id_seq, products_id_seq, customers_id_seq, stores_id_seq
    TO sales_loader;

-- Progress of `sales-etl rotate-keys` (resumable key rotation); written by operators only.
CREATE TABLE IF NOT EXISTS etl_key_rotation (
    dataset     text        PRIMARY KEY,
    mark        text        NOT NULL,
    last_row_id bigint      NOT NULL,
    done        boolean     NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
