//! Coalescing of wake-ups: a pool is rendered once per batch of changes, not once per
//! change.
//!
//! Every Bridge, Plugin, Secret, ConfigMap or worker-pod event wakes every pool of its
//! namespace, and each pool reconcile renders the whole pool (and, when the render
//! changed, wakes every Bridge of it). Applying 1,000 Bridges at once is 1,000 events:
//! without a window the pool rendered as often as it could finish a render, and each of
//! those renders woke the 1,000 Bridges again. [`spawn`] holds the first wake-up of an
//! object for `window` and folds every further one for the same object into it, so a
//! burst of N changes spread over T seconds costs about T / window renders, whatever N is.
//! The controller's scheduler still runs a reconcile at most once at a time per object, and
//! once more after it when a wake-up arrived meanwhile.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use tokio::time::Instant;

/// Forward what `input` receives to the returned receiver, each distinct item at most once
/// per `window` after its first arrival (a zero window forwards at once). Items still held
/// when `input` closes are forwarded then; the task ends when either side is gone.
pub fn spawn<T>(input: UnboundedReceiver<T>, window: Duration) -> UnboundedReceiver<T>
where
    T: Eq + Hash + Clone + Send + 'static,
{
    let (tx, rx) = unbounded();
    tokio::spawn(run(input, tx, window));
    rx
}

async fn run<T>(mut input: UnboundedReceiver<T>, out: UnboundedSender<T>, window: Duration)
where
    T: Eq + Hash + Clone,
{
    // Item → when it goes out. The first arrival sets the time; later ones fold into it.
    let mut held: HashMap<T, Instant> = HashMap::new();
    loop {
        let next = held.values().min().copied();
        let due = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            item = input.next() => match item {
                Some(item) if window.is_zero() => {
                    if out.unbounded_send(item).is_err() {
                        return;
                    }
                }
                Some(item) => {
                    held.entry(item).or_insert_with(|| Instant::now() + window);
                }
                None => {
                    for (item, _) in held.drain() {
                        let _closed = out.unbounded_send(item);
                    }
                    return;
                }
            },
            () = due => {
                let now = Instant::now();
                let ready: Vec<T> = held
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(item, _)| item.clone())
                    .collect();
                for item in ready {
                    held.remove(&item);
                    if out.unbounded_send(item).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything the coalescer sent so far, without waiting.
    fn drain(rx: &mut UnboundedReceiver<&'static str>) -> Vec<&'static str> {
        let mut out = Vec::new();
        while let Ok(x) = rx.try_recv() {
            out.push(x);
        }
        out
    }

    // Issue 15: a burst of 1,000 Bridge events for one pool, one every 10 ms for 10 s of
    // (paused, virtual) time, wakes the pool about once per window, not 1,000 times, and
    // the last change is never left behind.
    #[tokio::test(start_paused = true)]
    async fn a_burst_of_changes_wakes_a_pool_once_per_window() {
        let (tx, input) = unbounded();
        let mut out = spawn(input, Duration::from_secs(1));
        let mut woken = Vec::new();
        for _ in 0..1_000 {
            tx.unbounded_send("shop/default").unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            woken.extend(drain(&mut out));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        woken.extend(drain(&mut out));
        assert!(
            (9..=11).contains(&woken.len()),
            "10 s of changes with a 1 s window: {} wake-ups",
            woken.len()
        );
        assert!(woken.iter().all(|w| *w == "shop/default"));

        // Nothing more once the changes stop.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(drain(&mut out).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn each_pool_is_held_on_its_own_and_a_closed_input_flushes() {
        let (tx, input) = unbounded();
        let mut out = spawn(input, Duration::from_secs(1));
        tx.unbounded_send("shop/a").unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        tx.unbounded_send("shop/b").unwrap();
        tx.unbounded_send("shop/a").unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        // a's window (from its first change) is over; b's is not.
        assert_eq!(drain(&mut out), vec!["shop/a"]);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(drain(&mut out), vec!["shop/b"]);

        tx.unbounded_send("shop/c").unwrap();
        drop(tx);
        assert_eq!(
            out.next().await,
            Some("shop/c"),
            "held items go out at close"
        );
        assert_eq!(out.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_window_forwards_every_wake_up() {
        let (tx, input) = unbounded();
        let mut out = spawn(input, Duration::ZERO);
        for _ in 0..3 {
            tx.unbounded_send("shop/default").unwrap();
        }
        drop(tx);
        let all: Vec<_> = out.by_ref().collect().await;
        assert_eq!(all.len(), 3);
    }
}
