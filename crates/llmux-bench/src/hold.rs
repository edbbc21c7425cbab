//! `hold`: many concurrent streams, one connection each, held open while the contender's memory is sampled.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::task::spawn_local;

use crate::conn::{connect, exchange, Target};
use crate::{emit, procfs, Req};

/// `hold`: N streams, one connection each, opened at `ramp` per second and held `hold` seconds.
pub(crate) async fn hold_streams(
    req: &Req,
    streams: usize,
    ramp: f64,
    hold: f64,
    open_timeout: f64,
) -> anyhow::Result<Value> {
    let target = Rc::new(Target::new(&req.urls, &req.bodies, &req.headers)?);
    let opened = Rc::new(Cell::new(0usize));
    let failed = Rc::new(Cell::new(0usize));
    let ended = Rc::new(Cell::new(0usize));
    let last_error: Rc<RefCell<Option<String>>> = Rc::default();
    let before = procfs::sample(&req.watch);
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(streams);
    for i in 0..streams {
        let due = t0 + Duration::from_secs_f64(i as f64 / ramp.max(1.0));
        let (target, opened, failed, ended, last_error) =
            (target.clone(), opened.clone(), failed.clone(), ended.clone(), last_error.clone());
        tasks.push(spawn_local(async move {
            tokio::time::sleep_until(due.into()).await;
            let mut conn = match connect(target.addr).await {
                Ok(c) => c,
                Err(e) => {
                    failed.set(failed.get() + 1);
                    *last_error.borrow_mut() = Some(format!("connect: {e}"));
                    return;
                }
            };
            let mut got_first = false;
            let res = exchange(&mut conn, target.request(i as u64), Duration::from_secs(86_400), |_, _| {
                if !got_first {
                    got_first = true;
                    opened.set(opened.get() + 1);
                }
            })
            .await;
            match res {
                Ok(o) if o.status == 200 && got_first => ended.set(ended.get() + 1),
                Ok(o) => {
                    failed.set(failed.get() + 1);
                    *last_error.borrow_mut() = Some(format!("HTTP {}", o.status));
                }
                Err(e) => {
                    if got_first {
                        ended.set(ended.get() + 1);
                    } else {
                        failed.set(failed.get() + 1);
                    }
                    *last_error.borrow_mut() = Some(e.to_string());
                }
            }
        }));
    }
    let give_up = t0 + Duration::from_secs_f64(streams as f64 / ramp.max(1.0) + open_timeout);
    while opened.get() + failed.get() < streams && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let open_s = t0.elapsed().as_secs_f64();
    emit(
        &json!({"event": "open", "label": req.label, "opened": opened.get(), "failed": failed.get(), "open_s": open_s}),
    );
    let hold_end = Instant::now() + Duration::from_secs_f64(hold);
    let mut peak = procfs::sample(&req.watch);
    while Instant::now() < hold_end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = procfs::sample(&req.watch);
        if s.rss_kb > peak.rss_kb {
            peak = s;
        }
    }
    let held = opened.get() - ended.get().min(opened.get());
    let at_end = procfs::sample(&req.watch);
    for t in &tasks {
        t.abort();
    }
    drop(tasks);
    // Let the connections close and the contender release what it held.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = procfs::sample(&req.watch);
    let err = last_error.borrow().clone();
    Ok(json!({
        "mode": "hold",
        "label": req.label,
        "streams": streams,
        "opened": opened.get(),
        "failed": failed.get(),
        "still_open_at_end": held,
        "open_s": (open_s * 100.0).round() / 100.0,
        "rss_kb_before": before.rss_kb,
        "rss_kb_open": peak.rss_kb.max(at_end.rss_kb),
        "rss_kb_after": after.rss_kb,
        "hwm_kb": after.hwm_kb,
        "procs": after.procs,
        "last_error": err,
    }))
}
