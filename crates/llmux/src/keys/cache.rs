//! Every key in memory, by digest, so a request's key check never waits on the database. The map is swapped
//! whole (keys change rarely); spend is updated in place. A task re-reads the store every [`REFRESH_EVERY`]:
//! the whole table when a key was added, changed or deleted (by this replica or another on the same
//! PostgreSQL), and otherwise only the spend that changed. The same task resets budgets whose window has
//! passed and deletes spend-log rows past their retention.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::{Key, Keys};

/// How often the store is asked for changes.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// Spend written this long before the last look is read again (replicas' clocks differ a little).
const CLOCK_SLACK_MS: i64 = 5_000;
/// How often old spend-log rows are deleted.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// The keys by digest.
#[derive(Default)]
pub struct Cache {
    keys: ArcSwap<HashMap<[u8; 32], Arc<Key>>>,
}

impl Cache {
    pub fn get(&self, digest: &[u8; 32]) -> Option<Arc<Key>> {
        self.keys.load().get(digest).cloned()
    }

    pub fn by_token(&self, token: &str) -> Option<Arc<Key>> {
        let digest = super::digest_of_token(token)?;
        self.get(&digest)
    }

    pub fn len(&self) -> usize {
        self.keys.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces every key with `rows`.
    pub fn replace(&self, rows: Vec<super::store::KeyRow>) {
        let map = rows.into_iter().filter_map(Key::new).map(|k| (k.digest, Arc::new(k))).collect();
        self.keys.store(Arc::new(map));
    }

    /// Adds or replaces one key (after a change this replica made, before the next refresh).
    pub fn put(&self, row: super::store::KeyRow) {
        let Some(key) = Key::new(row) else { return };
        let key = Arc::new(key);
        self.keys.rcu(|keys| {
            let mut next = HashMap::clone(keys);
            next.insert(key.digest, key.clone());
            next
        });
    }

    pub fn remove(&self, token: &str) {
        let Some(digest) = super::digest_of_token(token) else { return };
        self.keys.rcu(|keys| {
            let mut next = HashMap::clone(keys);
            next.remove(&digest);
            next
        });
    }
}

/// Starts the refresh task; it ends with `keys`.
pub fn spawn_refresh(keys: &Arc<Keys>) {
    let keys = Arc::downgrade(keys);
    tokio::spawn(async move {
        let mut seen = (-1, -1);
        let mut since = 0;
        let mut retention_due = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(REFRESH_EVERY).await;
            let Some(keys) = Weak::upgrade(&keys) else { return };
            let now = super::now_ms();
            match refresh(&keys, &mut seen, since, now).await {
                Ok(()) => {
                    since = now - CLOCK_SLACK_MS;
                    keys.spend.database_up();
                }
                Err(e) => keys.spend.database_down(&e, now),
            }
            if tokio::time::Instant::now() >= retention_due {
                retention_due += RETENTION_EVERY;
                keys.spend.apply_retention(&keys.store).await;
            }
        }
    });
}

async fn refresh(keys: &Keys, seen: &mut (i64, i64), since: i64, now: i64) -> Result<(), sqlx::Error> {
    for (token, settings, due) in keys.store.due_resets(now).await? {
        let next = settings.budget_duration.as_deref().and_then(super::limits::parse_duration).map(|d| {
            let every = i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1);
            // The next boundary after now, on the key's own schedule.
            due + ((now - due) / every + 1) * every
        });
        keys.store.reset_budget(&token, due, next, now).await?;
    }
    let fingerprint = keys.store.fingerprint().await?;
    if fingerprint != *seen {
        keys.cache.replace(keys.store.load_keys().await?);
        for (token, amount) in keys.spend.all_unwritten() {
            if let Some(key) = keys.cache.by_token(&token) {
                key.add_spend(amount);
            }
        }
        *seen = fingerprint;
        return Ok(());
    }
    for (token, spend, reset_at) in keys.store.spends_since(since).await? {
        if let Some(key) = keys.cache.by_token(&token) {
            key.set_spend(spend + keys.spend.unwritten(&token), reset_at);
        }
    }
    Ok(())
}
