-- The prediction log. Portable SQL: the same file runs on SQLite and PostgreSQL.
-- Times are Unix milliseconds; ids are UUIDv7 strings made by the api, so a response can
-- carry its id before the row is written.
CREATE TABLE predictions (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    model_version TEXT NOT NULL,
    source TEXT NOT NULL,
    text TEXT,
    text_hash TEXT NOT NULL,
    text_chars BIGINT NOT NULL,
    tokens BIGINT NOT NULL,
    unknown_tokens BIGINT NOT NULL,
    over_max_length BIGINT NOT NULL,
    label TEXT NOT NULL,
    confidence DOUBLE PRECISION NOT NULL,
    probabilities TEXT NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL
);
CREATE INDEX predictions_created_at ON predictions (created_at);

-- One correction per prediction (the latest one wins). Retention never deletes a
-- prediction that has one: corrected rows are labelled training data.
CREATE TABLE feedback (
    prediction_id TEXT PRIMARY KEY REFERENCES predictions (id),
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX feedback_created_at ON feedback (created_at);
