//! The database behind keys and spend, through `sqlx`'s `Any` driver so one set of queries and one set of
//! migrations serve the embedded SQLite file and PostgreSQL alike (`$n` placeholders, which both accept; only
//! TEXT, BIGINT and DOUBLE PRECISION columns; no date functions: days are computed here).

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{AnyPool, Row};

use super::Settings;

/// The migrations, compiled in.
const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "keys and spend logs", include_str!("migrations/0001_keys.sql"))];

/// The compiled-in migrations as `sqlx` reads them.
#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|(version, name, sql)| {
                    Migration::new(*version, Cow::Borrowed(name), MigrationType::Simple, Cow::Borrowed(sql), false)
                })
                .collect())
        })
    }
}

/// A key as stored.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub token: String,
    pub key_name: String,
    pub settings: Settings,
    pub spend: f64,
    pub budget_reset_at: Option<i64>,
    pub created_at: i64,
    pub changed_at: i64,
}

/// One request's spend-log row (LiteLLM's `LiteLLM_SpendLogs`, the columns llmux has).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SpendRow {
    pub request_id: String,
    /// The key's hash, when a virtual key was used.
    pub api_key: Option<String>,
    pub key_alias: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    /// The model name the client sent.
    pub model: String,
    pub model_group: Option<String>,
    /// The deployment that answered, as the route header names it.
    pub deployment: Option<String>,
    pub api_base: Option<String>,
    pub protocol: String,
    pub call_type: String,
    pub status: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub tokens_estimated: bool,
    pub spend: f64,
    /// Milliseconds since the epoch.
    pub start_time: i64,
    pub end_time: i64,
    pub ttfb_ms: Option<i64>,
    pub day: String,
}

/// Filters of `GET /spend/logs`.
#[derive(Debug, Default)]
pub struct SpendFilter {
    pub api_key: Option<String>,
    pub request_id: Option<String>,
    pub user_id: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub limit: i64,
}

/// One line of the per-day report: a key's spend on one model on one day.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportLine {
    pub day: String,
    pub api_key: Option<String>,
    pub key_alias: Option<String>,
    pub model: String,
    pub spend: f64,
    pub total_tokens: i64,
    pub requests: i64,
}

/// The connection pool and which database it reaches.
pub struct Store {
    pool: AnyPool,
    kind: &'static str,
}

const KEY_COLUMNS: &str = "token, key_name, settings, spend, budget_reset_at, created_at, changed_at";
const SPEND_COLUMNS: &str = "request_id, api_key, key_alias, user_id, team_id, model, model_group, deployment, \
     api_base, protocol, call_type, status, prompt_tokens, completion_tokens, total_tokens, tokens_estimated, spend, \
     start_time, end_time, ttfb_ms, day";
/// How long a start-up waits for another process that is creating the same SQLite file.
const OPEN_PATIENCE: Duration = Duration::from_secs(15);

/// Whether another process opening the same SQLite file at the same moment explains `error`.
fn contended(error: &anyhow::Error) -> bool {
    let text = error.to_string();
    ["database is locked", "busy", "UNIQUE constraint", "already exists"].iter().any(|t| text.contains(t))
}

/// Rows per spend-log INSERT: one statement (prepared once, then reused) per 64 rows.
const ROWS_PER_INSERT: usize = 64;

impl Store {
    /// Connects to `database_url` (PostgreSQL) or to `llmux.db` under `data_dir` (created), and migrates.
    ///
    /// Replicas on one machine may share one SQLite file and start together: the one that loses the race to
    /// create the schema finds the file locked, or the migration already applied under it, and tries again
    /// (for up to [`OPEN_PATIENCE`]) rather than failing its start.
    pub async fn open(database_url: Option<&str>, data_dir: &Path) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let (url, kind, shown) = match database_url {
            Some(url) => (url.to_owned(), "postgresql", "database_url".to_owned()),
            None => {
                std::fs::create_dir_all(data_dir)
                    .map_err(|e| anyhow::anyhow!("cannot create --data-dir {}: {e}", data_dir.display()))?;
                let file = data_dir.join("llmux.db");
                (format!("sqlite://{}?mode=rwc", file.display()), "sqlite", file.display().to_string())
            }
        };
        let started = std::time::Instant::now();
        loop {
            match Store::connect(&url, kind, &shown).await {
                Ok(store) => {
                    tracing::info!(store = kind, at = %shown, "virtual keys and spend stored");
                    return Ok(store);
                }
                Err(e) if kind == "sqlite" && started.elapsed() < OPEN_PATIENCE && contended(&e) => {
                    tracing::debug!(error = %e, "key store busy at start-up (another llmux is opening it); retrying");
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn connect(url: &str, kind: &'static str, shown: &str) -> anyhow::Result<Store> {
        let sqlite = kind == "sqlite";
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(3))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // Readers never wait for the writer; a writer waits for another rather than failing.
                        // The timeout first: switching to WAL itself waits for the lock.
                        sqlx::Executor::execute(&mut *conn, "PRAGMA busy_timeout=5000; PRAGMA journal_mode=WAL;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot open the key store ({shown}): {}", crate::redact::redact(&e.to_string()))
            })?;
        Migrator::new(Embedded)
            .await
            .map_err(|e| anyhow::anyhow!("key store migrations: {e}"))?
            .run(&pool)
            .await
            .map_err(|e| anyhow::anyhow!("migrating the key store ({shown}): {e}"))?;
        Ok(Store { pool, kind })
    }

    /// `sqlite` or `postgresql`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub async fn load_keys(&self) -> Result<Vec<KeyRow>, sqlx::Error> {
        let rows = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM llmux_keys")).fetch_all(&self.pool).await?;
        Ok(rows.iter().filter_map(key_row).collect())
    }

    /// How many keys there are and when one last changed: a change means the cache reloads.
    pub async fn fingerprint(&self) -> Result<(i64, i64), sqlx::Error> {
        let row =
            sqlx::query("SELECT COUNT(*), COALESCE(MAX(changed_at), 0) FROM llmux_keys").fetch_one(&self.pool).await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Spend of the keys whose spend changed at or after `since` (ms).
    pub async fn spends_since(&self, since: i64) -> Result<Vec<(String, f64, Option<i64>)>, sqlx::Error> {
        let rows = sqlx::query("SELECT token, spend, budget_reset_at FROM llmux_keys WHERE spend_at >= $1")
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).collect()
    }

    pub async fn get_key(&self, token: &str) -> Result<Option<KeyRow>, sqlx::Error> {
        let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM llmux_keys WHERE token = $1"))
            .bind(token)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().and_then(key_row))
    }

    pub async fn key_by_alias(&self, alias: &str) -> Result<Option<KeyRow>, sqlx::Error> {
        let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM llmux_keys WHERE key_alias = $1"))
            .bind(alias)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().and_then(key_row))
    }

    pub async fn insert_key(&self, key: &KeyRow) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO llmux_keys (token, key_name, key_alias, user_id, team_id, settings, spend, budget_reset_at, \
             created_at, changed_at, spend_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&key.token)
        .bind(&key.key_name)
        .bind(key.settings.key_alias.as_deref())
        .bind(key.settings.user_id.as_deref())
        .bind(key.settings.team_id.as_deref())
        .bind(settings_json(&key.settings))
        .bind(key.spend)
        .bind(key.budget_reset_at)
        .bind(key.created_at)
        .bind(key.changed_at)
        .bind(key.changed_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Writes `settings` (and, when given, spend and the next reset) for `token`; false when there is no such key.
    pub async fn update_key(
        &self,
        token: &str,
        settings: &Settings,
        spend: Option<f64>,
        budget_reset_at: Option<i64>,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE llmux_keys SET settings = $1, key_alias = $2, user_id = $3, team_id = $4, \
             spend = COALESCE($5, spend), budget_reset_at = $6, changed_at = $7, spend_at = $7 WHERE token = $8",
        )
        .bind(settings_json(settings))
        .bind(settings.key_alias.as_deref())
        .bind(settings.user_id.as_deref())
        .bind(settings.team_id.as_deref())
        .bind(spend)
        .bind(budget_reset_at)
        .bind(now)
        .bind(token)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Gives key `old` a new token (`/key/regenerate`): the old key stops working, settings and spend stay.
    pub async fn replace_token(&self, old: &str, token: &str, key_name: &str, now: i64) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("UPDATE llmux_keys SET token = $1, key_name = $2, changed_at = $3 WHERE token = $4")
            .bind(token)
            .bind(key_name)
            .bind(now)
            .bind(old)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn delete_key(&self, token: &str) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("DELETE FROM llmux_keys WHERE token = $1").bind(token).execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }

    /// One page of keys (oldest first), filtered, and how many match in all.
    pub async fn list_keys(
        &self,
        key_alias: Option<&str>,
        user_id: Option<&str>,
        team_id: Option<&str>,
        page: i64,
        size: i64,
    ) -> Result<(Vec<KeyRow>, i64), sqlx::Error> {
        let filter = "($1 IS NULL OR key_alias = $1) AND ($2 IS NULL OR user_id = $2) AND ($3 IS NULL OR team_id = $3)";
        let total: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM llmux_keys WHERE {filter}"))
            .bind(key_alias)
            .bind(user_id)
            .bind(team_id)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM llmux_keys WHERE {filter} ORDER BY created_at, token LIMIT $4 OFFSET $5"
        ))
        .bind(key_alias)
        .bind(user_id)
        .bind(team_id)
        .bind(size)
        .bind((page - 1).max(0) * size)
        .fetch_all(&self.pool)
        .await?;
        Ok((rows.iter().filter_map(key_row).collect(), total))
    }

    /// Writes spend-log rows and adds each key's spend, all or nothing.
    pub async fn write_spend(&self, rows: &[SpendRow], deltas: &[(String, f64)], now: i64) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let numbered = self.kind != "sqlite";
        let full = insert_spend_sql(ROWS_PER_INSERT, numbered);
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let partial;
            let sql = if chunk.len() == ROWS_PER_INSERT {
                &full
            } else {
                partial = insert_spend_sql(chunk.len(), numbered);
                &partial
            };
            let mut query = sqlx::query(sql);
            for r in chunk {
                query = query
                    .bind(&r.request_id)
                    .bind(r.api_key.as_deref())
                    .bind(r.key_alias.as_deref())
                    .bind(r.user_id.as_deref())
                    .bind(r.team_id.as_deref())
                    .bind(&r.model)
                    .bind(r.model_group.as_deref())
                    .bind(r.deployment.as_deref())
                    .bind(r.api_base.as_deref())
                    .bind(&r.protocol)
                    .bind(&r.call_type)
                    .bind(r.status)
                    .bind(r.prompt_tokens)
                    .bind(r.completion_tokens)
                    .bind(r.total_tokens)
                    .bind(i64::from(r.tokens_estimated))
                    .bind(r.spend)
                    .bind(r.start_time)
                    .bind(r.end_time)
                    .bind(r.ttfb_ms)
                    .bind(&r.day);
            }
            query.execute(&mut *tx).await?;
        }
        for (token, amount) in deltas {
            sqlx::query("UPDATE llmux_keys SET spend = spend + $1, spend_at = $2 WHERE token = $3")
                .bind(*amount)
                .bind(now)
                .bind(token)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    /// Keys whose budget window has passed: (token, settings, the reset that was due).
    pub async fn due_resets(&self, now: i64) -> Result<Vec<(String, Settings, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT token, settings, budget_reset_at FROM llmux_keys WHERE budget_reset_at IS NOT NULL AND budget_reset_at <= $1",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let settings = serde_json::from_str(&r.try_get::<String, _>(1).ok()?).ok()?;
                Some((r.try_get(0).ok()?, settings, r.try_get(2).ok()?))
            })
            .collect())
    }

    /// Resets `token`'s spend if its reset at `due` is still pending (another replica may have done it).
    pub async fn reset_budget(&self, token: &str, due: i64, next: Option<i64>, now: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE llmux_keys SET spend = 0, budget_reset_at = $1, spend_at = $2 WHERE token = $3 AND budget_reset_at = $4",
        )
        .bind(next)
        .bind(now)
        .bind(token)
        .bind(due)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes spend-log rows of requests that started before `cutoff` (ms).
    pub async fn delete_spend_before(&self, cutoff: i64) -> Result<u64, sqlx::Error> {
        let done =
            sqlx::query("DELETE FROM llmux_spend_logs WHERE start_time < $1").bind(cutoff).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    pub async fn spend_logs(&self, f: &SpendFilter) -> Result<Vec<SpendRow>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {SPEND_COLUMNS} FROM llmux_spend_logs WHERE ($1 IS NULL OR api_key = $1) AND \
             ($2 IS NULL OR request_id = $2) AND ($3 IS NULL OR user_id = $3) AND ($4 IS NULL OR start_time >= $4) \
             AND ($5 IS NULL OR start_time < $5) ORDER BY start_time DESC LIMIT $6"
        ))
        .bind(f.api_key.as_deref())
        .bind(f.request_id.as_deref())
        .bind(f.user_id.as_deref())
        .bind(f.from_ms)
        .bind(f.to_ms)
        .bind(f.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(spend_row).collect()
    }

    /// Spend, tokens and requests per day, key and model between `from_ms` and `to_ms`.
    pub async fn report(
        &self,
        from_ms: i64,
        to_ms: i64,
        api_key: Option<&str>,
    ) -> Result<Vec<ReportLine>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT day, api_key, MAX(key_alias), model, SUM(spend), CAST(SUM(total_tokens) AS BIGINT), COUNT(*) \
             FROM llmux_spend_logs WHERE start_time >= $1 AND start_time < $2 AND ($3 IS NULL OR api_key = $3) \
             GROUP BY day, api_key, model ORDER BY day, api_key, model",
        )
        .bind(from_ms)
        .bind(to_ms)
        .bind(api_key)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReportLine {
                    day: r.try_get(0)?,
                    api_key: r.try_get(1)?,
                    key_alias: r.try_get(2)?,
                    model: r.try_get(3)?,
                    spend: r.try_get(4)?,
                    total_tokens: r.try_get(5)?,
                    requests: r.try_get(6)?,
                })
            })
            .collect()
    }
}

fn settings_json(settings: &Settings) -> String {
    serde_json::to_string(settings).unwrap_or_else(|_| "{}".to_owned())
}

fn key_row(row: &AnyRow) -> Option<KeyRow> {
    let settings: String = row.try_get("settings").ok()?;
    Some(KeyRow {
        token: row.try_get("token").ok()?,
        key_name: row.try_get("key_name").ok()?,
        settings: serde_json::from_str(&settings).ok()?,
        spend: row.try_get("spend").ok()?,
        budget_reset_at: row.try_get("budget_reset_at").ok()?,
        created_at: row.try_get("created_at").ok()?,
        changed_at: row.try_get("changed_at").ok()?,
    })
}

fn spend_row(r: &AnyRow) -> Result<SpendRow, sqlx::Error> {
    Ok(SpendRow {
        request_id: r.try_get("request_id")?,
        api_key: r.try_get("api_key")?,
        key_alias: r.try_get("key_alias")?,
        user_id: r.try_get("user_id")?,
        team_id: r.try_get("team_id")?,
        model: r.try_get("model")?,
        model_group: r.try_get("model_group")?,
        deployment: r.try_get("deployment")?,
        api_base: r.try_get("api_base")?,
        protocol: r.try_get("protocol")?,
        call_type: r.try_get("call_type")?,
        status: r.try_get("status")?,
        prompt_tokens: r.try_get("prompt_tokens")?,
        completion_tokens: r.try_get("completion_tokens")?,
        total_tokens: r.try_get("total_tokens")?,
        tokens_estimated: r.try_get::<i64, _>("tokens_estimated")? != 0,
        spend: r.try_get("spend")?,
        start_time: r.try_get("start_time")?,
        end_time: r.try_get("end_time")?,
        ttfb_ms: r.try_get("ttfb_ms")?,
        day: r.try_get("day")?,
    })
}

/// `INSERT INTO llmux_spend_logs … VALUES ($1, …), …` for `rows` rows; with plain `?` placeholders unless
/// `numbered` (PostgreSQL needs `$n`). SQLite looks a numbered parameter up by name, one list scan per bind,
/// which made binding a many-row insert cost more than writing it.
fn insert_spend_sql(rows: usize, numbered: bool) -> String {
    const COLUMNS: usize = 21;
    let mut sql = format!("INSERT INTO llmux_spend_logs ({SPEND_COLUMNS}) VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        let params: Vec<String> =
            (1..=COLUMNS).map(|n| if numbered { format!("${}", row * COLUMNS + n) } else { "?".to_owned() }).collect();
        sql.push('(');
        sql.push_str(&params.join(", "));
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

    use super::*;

    fn row(n: i64) -> SpendRow {
        SpendRow {
            request_id: format!("req-{n}"),
            api_key: None,
            key_alias: None,
            user_id: None,
            team_id: None,
            model: "m".into(),
            model_group: Some("g".into()),
            deployment: None,
            api_base: None,
            protocol: "openai".into(),
            call_type: "chat".into(),
            status: 200,
            prompt_tokens: n,
            completion_tokens: 1,
            total_tokens: n + 1,
            tokens_estimated: false,
            spend: 0.0,
            start_time: 1_000 + n,
            end_time: 2_000 + n,
            ttfb_ms: Some(5),
            day: "2026-12-03".into(),
        }
    }

    #[tokio::test]
    async fn replicas_starting_together_share_one_sqlite_file() {
        let dir = tempfile::tempdir().unwrap();
        let opened = futures_util::future::join_all((0..4).map(|_| Store::open(None, dir.path()))).await;
        let stores: Vec<Store> = opened.into_iter().map(|s| s.expect("every replica opens the file")).collect();
        // Rows written by two of them, in full statements and a partial last one, are all read back by a third.
        stores[0].write_spend(&(0..ROWS_PER_INSERT as i64 + 3).map(row).collect::<Vec<_>>(), &[], 0).await.unwrap();
        stores[1].write_spend(&(1000..1002).map(row).collect::<Vec<_>>(), &[], 0).await.unwrap();
        let logs = stores[2].spend_logs(&SpendFilter { limit: 1000, ..SpendFilter::default() }).await.unwrap();
        assert_eq!(logs.len(), ROWS_PER_INSERT + 5);
        assert!(logs.iter().any(|r| *r == row(2)), "a row reads back as written");
    }

    #[test]
    fn a_many_row_insert_numbers_every_parameter_once() {
        let sql = insert_spend_sql(2, true);
        assert!(sql.ends_with("$21), ($22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36, $37, $38, $39, $40, $41, $42)"), "{sql}");
        assert_eq!(insert_spend_sql(2, false).matches('?').count(), 42);
    }
}
