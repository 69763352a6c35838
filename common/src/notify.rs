//! Caches kept fresh by LISTEN/NOTIFY: [`listen`] delivers the notifications of one channel to
//! a [`Subscriber`] for as long as it lives.
//!
//! A cache fed this way is only as good as its subscription, so the subscriber hears about the
//! subscription itself: `listening(false)` while the connection is down (the cache must not be
//! trusted: notifications sent meanwhile are lost), and `changed(None)` ("anything may have
//! changed") each time it is lost and each time it is back, before `listening(true)`.

use std::sync::Weak;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Wait before listening again after the listening connection failed.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);

/// What a cache does with the notifications of its channel.
pub trait Subscriber: Send + Sync + 'static {
    /// `Some(payload)`: one notification; `None`: anything may have changed.
    fn changed(&self, payload: Option<&str>);
    /// Whether notifications are being received: the cache may be trusted only then.
    fn listening(&self, on: bool);
}

/// Listens on `channel` through `pool` and tells `subscriber`, until it is dropped or `stop`
/// is cancelled. Spawn it.
pub async fn listen<S: Subscriber>(
    pool: PgPool,
    channel: &'static str,
    subscriber: Weak<S>,
    stop: CancellationToken,
) {
    loop {
        let subscribed = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            () = stop.cancelled() => return,
            subscribed = subscribed => match subscribed {
                Ok(listener) => listener,
                Err(error) => {
                    if pool.is_closed() || subscriber.strong_count() == 0 {
                        return;
                    }
                    tracing::warn!(%error, channel, "cannot listen for changes: not caching");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(RELISTEN_DELAY) => continue,
                    }
                }
            },
        };
        // Whatever was cached before this subscription may have missed a change.
        match subscriber.upgrade() {
            Some(subscriber) => {
                subscriber.changed(None);
                subscriber.listening(true);
            }
            None => return,
        }
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                next = listener.try_recv() => next,
            };
            let Some(subscriber) = subscriber.upgrade() else {
                return;
            };
            match next {
                Ok(Some(notification)) => subscriber.changed(Some(notification.payload())),
                // `None`: the connection was lost (the listener would reconnect inside its next
                // call, and what is sent until then is lost). Both ways, stop trusting the cache
                // and subscribe again.
                Ok(None) | Err(_) => {
                    subscriber.listening(false);
                    subscriber.changed(None);
                    if pool.is_closed() {
                        return;
                    }
                    if let Err(error) = next {
                        tracing::warn!(%error, channel, "listening for changes failed: not caching until it is back");
                    }
                    break;
                }
            }
        }
    }
}
