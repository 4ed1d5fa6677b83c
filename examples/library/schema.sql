-- The library system of the source texts, as one shared database.
-- Three tables, three services (ReadingList, BookCatalog, BookInventory); every
-- service also writes the audit table.

CREATE TABLE book_catalog (
    id               bigserial PRIMARY KEY,
    isbn             text NOT NULL UNIQUE,
    title            text NOT NULL,
    author           text NOT NULL,
    published_year   integer CHECK (published_year BETWEEN 1400 AND 2100),
    genre            text,
    description      text,
    -- Inventory columns: written by the BookInventory service, not BookCatalog.
    copies_total     integer NOT NULL DEFAULT 0 CHECK (copies_total >= 0),
    copies_available integer NOT NULL DEFAULT 0 CHECK (copies_available >= 0),
    shelf_location   text,
    last_stocktake   timestamptz,
    CHECK (copies_available <= copies_total)
);
COMMENT ON TABLE book_catalog IS 'Books in the library, with their inventory status';

CREATE TABLE reading_list (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reader_id bigint NOT NULL,
    book_id   bigint NOT NULL REFERENCES book_catalog (id) ON DELETE CASCADE,
    status    text NOT NULL DEFAULT 'want-to-read'
              CHECK (status IN ('want-to-read', 'reading', 'finished')),
    added_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (reader_id, book_id)
);
CREATE INDEX reading_list_book_idx ON reading_list (book_id);

CREATE TABLE audit (
    id          bigserial PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    service     text NOT NULL,
    action      text NOT NULL,
    entity      text NOT NULL,
    entity_id   bigint,
    details     jsonb
);
CREATE INDEX audit_entity_idx ON audit (entity, entity_id);
