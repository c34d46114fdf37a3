-- Causeway's shared store, version 3: the destinations' circuit breakers
-- (docs/circuit-breaker.md), shared by every replica of the pool so that one replica's
-- opening holds the others' attempts too. The state is the worker's JSON record; a row
-- is deleted when the breaker is closed without failures, or the destination resumed.
CREATE TABLE breakers (
    bridge text NOT NULL,
    destination text NOT NULL,
    state text NOT NULL,
    PRIMARY KEY (bridge, destination)
);
