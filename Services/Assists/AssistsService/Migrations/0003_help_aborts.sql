-- A help's last statement travels with its transaction's COMMIT (one round trip, not two: see
-- PostgresConnection.queryCommitting), so the client cannot read its result and then decide to
-- roll back. The statement decides on the server instead, aborting the transaction through this
-- function with a code of its own (FA001: the task moved since it was read; FA002: the helper
-- already helped; FA003: a batch's write did not go as its read). The service maps the code back.
CREATE FUNCTION abort_help(code text, reason text) RETURNS int8 LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = code, MESSAGE = reason;
END
$$;
