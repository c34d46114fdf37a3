-- Causeway's shared store, version 4: the bridges' WebSub subscriptions (docs/websub.md),
-- shared by every replica of the pool so that a subscriber verified by one replica gets
-- the events every replica accepts. The record is the worker's JSON (it holds the
-- subscriber's hub.secret, which deliveries are signed with).
CREATE TABLE subscriptions (
    bridge text NOT NULL,
    callback text NOT NULL,
    id text NOT NULL,
    record text NOT NULL,
    PRIMARY KEY (bridge, callback)
);
