//! How the requests are scheduled: closed loop (N terminals, each sending its next request
//! when the previous one is answered) or open loop (a fixed arrival rate, whatever the latency;
//! latencies are measured from the scheduled start, so a stalled server is not hidden by
//! requests that were sent late).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::Semaphore;

use crate::workload::Workload;

/// How long a terminal waits after the platform shed its request: the `Retry-After` the
/// command API sends with every 503 `overloaded` (and, at the rates a benchmark sets, with a
/// 429 `rate_limited`). A terminal that came straight back would only feed the overload.
const SHED_PAUSE: Duration = Duration::from_secs(1);

/// Runs `concurrency` terminals, each sending its next request when the previous one is
/// answered (or [`SHED_PAUSE`] after it was shed), until the window ends.
pub async fn closed_loop(workload: Arc<Workload>, concurrency: usize, seed: u64) {
    let workers: Vec<_> = (0..concurrency)
        .map(|i| {
            let workload = workload.clone();
            tokio::spawn(async move {
                let mut rng = SmallRng::seed_from_u64(seed.wrapping_add(i as u64));
                while Instant::now() < workload.window.end && workload.claim() {
                    if workload.step(&mut rng, Instant::now()).await {
                        tokio::time::sleep_until(
                            (Instant::now() + SHED_PAUSE).min(workload.window.end).into(),
                        )
                        .await;
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        // A panicking worker is a bug in the load generator: surface it.
        if let Err(error) = worker.await {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}

/// Starts `rate` requests per second on schedule, whatever the latency, with at most
/// `max_in_flight` outstanding (requests beyond that are counted as client errors, not sent).
pub async fn open_loop(workload: Arc<Workload>, rate: u64, max_in_flight: usize, seed: u64) {
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let mut rng = SmallRng::seed_from_u64(seed);
    let start = Instant::now();
    for i in 0u64.. {
        let nanos = u64::try_from(u128::from(i) * 1_000_000_000 / u128::from(rate)).unwrap_or(u64::MAX);
        let at = start + Duration::from_nanos(nanos);
        if at >= workload.window.end || !workload.claim() {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let workload = workload.clone();
                let mut task_rng = SmallRng::seed_from_u64(rng.random());
                tokio::spawn(async move {
                    workload.step(&mut task_rng, at).await;
                    drop(permit);
                });
            }
            Err(_) => workload.record(
                at,
                "any",
                Err(format!(
                    "client: {max_in_flight} requests in flight, request not sent"
                )),
            ),
        }
    }
    // Every permit back means every request has been answered.
    let all = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
}
