-- Facts about the store itself. `master_key_check` ties the store to the master key it was
-- created with, so a process holding another key stops instead of writing what the
-- server cannot open.
CREATE TABLE store_meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
