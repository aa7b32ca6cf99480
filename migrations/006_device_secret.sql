-- compatibility: additive
-- A device proves who it is on later logins with a secret it got once, at its first login. Only the secret's
-- SHA-256 is stored. Devices registered before this migration have none; they are given one at their next login.
-- Additive (a nullable column): a fleetbed that predates it keeps serving on this schema.
ALTER TABLE device ADD COLUMN secret_hash bytea;
