-- device_state is rewritten by every ingest batch, one row per device. Free space on each page lets those
-- updates stay on the page (HOT: no index writes, less WAL, no bloat from index entries).
ALTER TABLE device_state SET (fillfactor = 60);
