//! Stored Responses shared between replicas through Redis, so a `previous_response_id` or a
//! `GET /v1/responses/{id}` may land on another replica than the one that answered.
//!
//! Each replica keeps its own bounded store (`protocol::responses::store`); writes and deletes are copied to Redis
//! by a background task (a request never waits on them), and a replica that lacks an id asks Redis once, within
//! [`FETCH_TIMEOUT`], before answering "not found". Keys: `<prefix>:response:<id>`, kept [`TTL_SECS`].
//! Redis down: each replica serves what it stored itself; the outage is logged once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use tokio::sync::{mpsc, Mutex};

use crate::config::RedisSettings;
use crate::protocol::responses::store::{Shared, Store, Stored};

/// How long a stored response lives in Redis (a week: agent sessions resume within days, not months).
pub const TTL_SECS: u64 = 7 * 24 * 3600;
/// How long a request waits for Redis when its replica lacks a response.
pub const FETCH_TIMEOUT: Duration = Duration::from_millis(500);

enum Op {
    Put(String, Vec<u8>),
    Delete(String),
}

/// One replica's link to the shared copies.
pub struct Replica {
    info: Result<redis::ConnectionInfo, String>,
    prefix: String,
    conn: Mutex<Option<ConnectionManager>>,
    writes: mpsc::UnboundedSender<Op>,
    /// Whether the last Redis call failed (so an outage logs once).
    down: AtomicBool,
}

impl Replica {
    /// Connects `store` to the Redis at `settings`: from now on its writes and deletes are shared, and
    /// [`Replica::fetch`] fills it from the others'.
    pub fn attach(store: &Store, settings: &RedisSettings, prefix: String) -> Arc<Replica> {
        let (writes, mut queue) = mpsc::unbounded_channel();
        let replica = Arc::new(Replica {
            info: crate::shared::connection_info(settings),
            prefix,
            conn: Mutex::new(None),
            writes,
            down: AtomicBool::new(false),
        });
        let writer = Arc::downgrade(&replica);
        tokio::spawn(async move {
            while let Some(op) = queue.recv().await {
                let Some(replica) = writer.upgrade() else { return };
                replica.write(op).await;
            }
        });
        store.share(replica.clone());
        replica
    }

    fn key(&self, id: &str) -> String {
        format!("{}:response:{id}", self.prefix)
    }
}

impl Shared for Replica {
    /// Copies a stored response to Redis, in the background.
    fn put(&self, id: &str, stored: &Stored) {
        match serde_json::to_vec(stored) {
            Ok(bytes) => {
                let _ = self.writes.send(Op::Put(id.to_owned(), bytes));
            }
            Err(e) => tracing::warn!("a stored response could not be serialised for redis: {e}"),
        }
    }

    /// Deletes a response everywhere, in the background.
    fn delete(&self, id: &str) {
        let _ = self.writes.send(Op::Delete(id.to_owned()));
    }

    fn fetch<'a>(
        &'a self,
        id: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Stored>> + Send + 'a>> {
        Box::pin(self.fetch_now(id))
    }
}

impl Replica {
    /// The response another replica stored under `id`, if Redis answers in time.
    async fn fetch_now(&self, id: &str) -> Option<Stored> {
        let key = self.key(id);
        let call = async {
            let mut conn = self.connection().await?;
            conn.get::<_, Option<Vec<u8>>>(&key).await.map_err(|e| e.to_string())
        };
        let bytes = match tokio::time::timeout(FETCH_TIMEOUT, call).await {
            Ok(Ok(bytes)) => {
                self.up();
                bytes?
            }
            Ok(Err(e)) => return self.failed(&e),
            Err(_) => return self.failed("no answer in time"),
        };
        serde_json::from_slice(&bytes).ok()
    }

    async fn write(&self, op: Op) {
        let result = async {
            let mut conn = self.connection().await?;
            match op {
                Op::Put(id, bytes) => conn.set_ex::<_, _, ()>(self.key(&id), bytes, TTL_SECS).await,
                Op::Delete(id) => conn.del::<_, ()>(self.key(&id)).await,
            }
            .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(FETCH_TIMEOUT * 4, result).await {
            Ok(Ok(())) => self.up(),
            Ok(Err(e)) => {
                self.failed::<()>(&e);
            }
            Err(_) => {
                self.failed::<()>("no answer in time");
            }
        }
    }

    async fn connection(&self) -> Result<ConnectionManager, String> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let client = redis::Client::open(self.info.clone()?).map_err(|e| e.to_string())?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(FETCH_TIMEOUT)
            .set_response_timeout(FETCH_TIMEOUT)
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config).await.map_err(|e| e.to_string())?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    fn up(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("stored responses are shared through redis again");
        }
    }

    fn failed<T>(&self, why: &str) -> Option<T> {
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!("stored responses cannot be shared through redis ({why}); each replica keeps its own");
        }
        None
    }
}
