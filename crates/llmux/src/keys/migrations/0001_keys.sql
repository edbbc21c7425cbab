-- Virtual keys and spend. Written once for SQLite and PostgreSQL alike: TEXT, BIGINT and DOUBLE PRECISION only,
-- times as milliseconds since the epoch, days as 'YYYY-MM-DD' text.
CREATE TABLE llmux_keys (
    token TEXT PRIMARY KEY,
    key_name TEXT NOT NULL,
    key_alias TEXT,
    user_id TEXT,
    team_id TEXT,
    settings TEXT NOT NULL,
    spend DOUBLE PRECISION NOT NULL DEFAULT 0,
    budget_reset_at BIGINT,
    created_at BIGINT NOT NULL,
    changed_at BIGINT NOT NULL,
    spend_at BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX llmux_keys_alias ON llmux_keys (key_alias);
CREATE INDEX llmux_keys_spend_at ON llmux_keys (spend_at);

CREATE TABLE llmux_spend_logs (
    request_id TEXT NOT NULL,
    api_key TEXT,
    key_alias TEXT,
    user_id TEXT,
    team_id TEXT,
    model TEXT NOT NULL,
    model_group TEXT,
    deployment TEXT,
    api_base TEXT,
    protocol TEXT NOT NULL,
    call_type TEXT NOT NULL,
    status BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    total_tokens BIGINT NOT NULL,
    tokens_estimated BIGINT NOT NULL,
    spend DOUBLE PRECISION NOT NULL,
    start_time BIGINT NOT NULL,
    end_time BIGINT NOT NULL,
    ttfb_ms BIGINT,
    day TEXT NOT NULL
);
CREATE INDEX llmux_spend_logs_start ON llmux_spend_logs (start_time);
CREATE INDEX llmux_spend_logs_key_day ON llmux_spend_logs (api_key, day);
