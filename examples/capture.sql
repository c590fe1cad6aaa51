-- Captures a payment under a zk-recipes lock, fenced by the holder's token: PostgreSQL itself
-- refuses the capture if a later holder of the lock has already written (recipes/fencing.md).
--
--   zk-recipes lock /payments/order-42 -- sh -c 'psql "$DATABASE_URL" -X -v ON_ERROR_STOP=1 \
--       -v token="$ZK_FENCING_TOKEN" -v lock="$ZK_LOCK_PATH" -v order=42 -v worker=cron \
--       -f examples/capture.sql'
--
-- (`sh -c` with single quotes, so that $ZK_FENCING_TOKEN is expanded in the command's
-- environment, not by the shell that starts zk-recipes.) Without -v token / -v lock, the
-- script reads ZK_FENCING_TOKEN and ZK_LOCK_PATH from its environment itself.
--
-- Tables: `fences` as zk_recipes::fence::FenceTable::create_statement() makes it, and a
-- `payments` table whose rows carry their own fence column (examples/payment.rs).
-- A stale token ends the script with an error (psql exits 3 with ON_ERROR_STOP) and rolls
-- the transaction back.

\if :{?token}
\else
  \getenv token ZK_FENCING_TOKEN
\endif
\if :{?lock}
\else
  \getenv lock ZK_LOCK_PATH
\endif

BEGIN;

-- psql does not put variables into a DO body: hand them over as settings of this transaction.
SELECT set_config('zk.token', :'token', true) AS token, set_config('zk.lock', :'lock', true) AS lock \gset zk_

-- Idiom 1: advance the lock's fence row first. It stays locked until COMMIT, so a later
-- holder's capture waits for this one, and a stale one is refused here.
DO $$
DECLARE
  presented text := current_setting('zk.token');
  won text;
BEGIN
  INSERT INTO fences AS fences (lock_path, token) VALUES (current_setting('zk.lock'), presented)
  ON CONFLICT (lock_path) DO UPDATE SET token = EXCLUDED.token, updated_at = now()
  WHERE fences.token <= EXCLUDED.token;
  IF NOT FOUND THEN
    SELECT token INTO won FROM fences WHERE lock_path = current_setting('zk.lock');
    RAISE EXCEPTION 'stale fencing token %: the fence is at %', presented, won
      USING HINT = 'a later holder of the lock has written; this one has lost the lock';
  END IF;
END
$$;

-- Idiom 2: the payment row carries its own fence, checked in the same statement.
UPDATE payments SET status = 'captured', captured_by = :'worker', fence = :'token'
WHERE id = :'order' AND fence <= :'token'
RETURNING id, status, captured_by, fence;

COMMIT;
