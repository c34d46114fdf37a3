-- Causeway's shared store, version 2: the indexes of the filtered events listing (the
-- console's and the admin API's `?bridge=&status=&webhookId=`), newest first. Without them
-- a page filtered by status, or by bridge and status, reads every event newer than its
-- last match. See docs/console.md.

-- The sender's message id (the `webhook-id` header, Standard Webhooks), for the search;
-- written by the worker with each event, filled here for the events stored before.
ALTER TABLE events ADD COLUMN webhook_id text;
UPDATE events e SET webhook_id = w.value
  FROM (
    SELECT DISTINCT ON (ev.id) ev.id, h.value->>1 AS value
      FROM events ev, jsonb_array_elements(ev.record->'headers') WITH ORDINALITY AS h(value, n)
     WHERE lower(h.value->>0) = 'webhook-id'
     ORDER BY ev.id, h.n
  ) w
 WHERE e.id = w.id AND octet_length(w.value) BETWEEN 1 AND 512;

CREATE INDEX events_status ON events (status, id);
CREATE INDEX events_bridge_status ON events (bridge, status, id);
CREATE INDEX events_webhook_id ON events (webhook_id, id) WHERE webhook_id IS NOT NULL;
