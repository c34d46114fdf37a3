//! How the embedded store writes its three hot records (events, jobs, attempts): one
//! version byte, then little-endian integers and length-prefixed strings in a fixed order.
//!
//! Why not JSON, as before: every delivered event decodes and re-encodes these records
//! several times in the writer's transaction (the job, the event whose status follows its
//! jobs, the index entries that follow the event), and JSON's field names, escaping and
//! number parsing were a measurable share of the worker's CPU per event. Records written
//! as JSON by earlier versions start with `{`, never with a version byte, and still
//! decode: a store upgrades record by record as it is written.
//!
//! Every other table (breakers, subscriptions, keyvalue) stays JSON: written rarely.

use uuid::Uuid;

use super::{AttemptRecord, EventRecord, EventStatus, JobRecord, JobStatus, JobTarget};
use crate::traces::{SpanId, SpanRef, TraceContext, TraceId};

/// The first byte of a record in this encoding. JSON records start with `{` (0x7b).
pub(crate) const BINARY_V1: u8 = 1;

/// The decoder's complaint: what was short or out of range.
pub(crate) type Bad = String;

/// A record the embedded store writes in binary.
pub(crate) trait Binary: Sized {
    fn write(&self, w: &mut Writer);
    fn read(r: &mut Reader<'_>) -> Result<Self, Bad>;
}

/// Encode `v` with its version byte.
pub(crate) fn encode<T: Binary>(v: &T) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(128));
    w.u8(BINARY_V1);
    v.write(&mut w);
    w.0
}

/// Decode a record written by [`encode`]: `None` when `raw` is not in this encoding (JSON
/// written by an earlier version), an error when it is but does not decode whole.
pub(crate) fn decode<T: Binary>(raw: &[u8]) -> Option<Result<T, Bad>> {
    let (&version, rest) = raw.split_first()?;
    match version {
        BINARY_V1 => {
            let mut r = Reader(rest);
            Some(T::read(&mut r).and_then(|v| {
                if r.0.is_empty() {
                    Ok(v)
                } else {
                    Err(format!("{} bytes after the record", r.0.len()))
                }
            }))
        }
        b'{' => None,
        other => Some(Err(format!("unknown record version {other}"))),
    }
}

pub(crate) struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn uuid(&mut self, v: &Uuid) {
        self.0.extend_from_slice(v.as_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.u8(v as u8);
    }
    fn str(&mut self, s: &str) {
        // Lengths are u32: a record is far below 4 GiB (bodies are stored apart).
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
    /// A presence byte, then the value when there is one.
    fn opt<T>(&mut self, v: Option<T>, write: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                write(self, v);
            }
        }
    }
    fn opt_str(&mut self, s: Option<&str>) {
        self.opt(s, Self::str);
    }
}

pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        if self.0.len() < n {
            return Err(format!(
                "record ends early: {n} bytes wanted, {} left",
                self.0.len()
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Bad> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, Bad> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Bad> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, Bad> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, Bad> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn u128(&mut self) -> Result<u128, Bad> {
        Ok(u128::from_le_bytes(self.array()?))
    }
    fn uuid(&mut self) -> Result<Uuid, Bad> {
        Ok(Uuid::from_bytes(self.array()?))
    }
    fn bool(&mut self) -> Result<bool, Bad> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!("{b} is not a bool")),
        }
    }
    fn str(&mut self) -> Result<String, Bad> {
        let n = self.u32()? as usize;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|e| format!("a string is not UTF-8: {e}"))
    }
    /// What [`Writer::opt`] wrote.
    fn opt<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T, Bad>) -> Result<Option<T>, Bad> {
        Ok(if self.bool()? {
            Some(read(self)?)
        } else {
            None
        })
    }
    fn opt_str(&mut self) -> Result<Option<String>, Bad> {
        self.opt(Self::str)
    }
    /// A count of items, each at least `min` bytes long: a corrupt count fails here
    /// instead of allocating for it.
    fn count(&mut self, min: usize) -> Result<usize, Bad> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min) > self.0.len() {
            return Err(format!("{n} items cannot fit in {} bytes", self.0.len()));
        }
        Ok(n)
    }
}

fn job_status(s: JobStatus) -> u8 {
    match s {
        JobStatus::Pending => 0,
        JobStatus::Retrying => 1,
        JobStatus::Delivered => 2,
        JobStatus::Dead => 3,
        JobStatus::Paused => 4,
    }
}

fn read_job_status(b: u8) -> Result<JobStatus, Bad> {
    Ok(match b {
        0 => JobStatus::Pending,
        1 => JobStatus::Retrying,
        2 => JobStatus::Delivered,
        3 => JobStatus::Dead,
        4 => JobStatus::Paused,
        b => return Err(format!("{b} is not a job status")),
    })
}

fn event_status(s: EventStatus) -> u8 {
    match s {
        EventStatus::Pending => 0,
        EventStatus::Delivered => 1,
        EventStatus::Dead => 2,
        EventStatus::Filtered => 3,
    }
}

fn read_event_status(b: u8) -> Result<EventStatus, Bad> {
    Ok(match b {
        0 => EventStatus::Pending,
        1 => EventStatus::Delivered,
        2 => EventStatus::Dead,
        3 => EventStatus::Filtered,
        b => return Err(format!("{b} is not an event status")),
    })
}

impl Binary for JobRecord {
    fn write(&self, w: &mut Writer) {
        w.uuid(&self.event);
        w.u32(self.target.slot());
        w.str(self.target.destination_name().unwrap_or_default());
        w.str(&self.bridge);
        w.u8(job_status(self.status));
        w.u64(self.due_at_ms);
        w.u64(self.received_at_ms);
        w.u32(self.attempts);
        w.u32(self.attempts_at_queue);
        w.opt_str(self.last_error.as_deref());
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Bad> {
        let event = r.uuid()?;
        let slot = r.u32()?;
        let name = r.str()?;
        Ok(JobRecord {
            event,
            target: JobTarget::from_slot(slot, name),
            bridge: r.str()?,
            status: read_job_status(r.u8()?)?,
            due_at_ms: r.u64()?,
            received_at_ms: r.u64()?,
            attempts: r.u32()?,
            attempts_at_queue: r.u32()?,
            last_error: r.opt_str()?,
        })
    }
}

impl Binary for EventRecord {
    fn write(&self, w: &mut Writer) {
        w.uuid(&self.id);
        w.str(&self.bridge);
        w.u64(self.received_at_ms);
        w.str(&self.method);
        w.str(&self.query);
        w.u32(self.headers.len() as u32);
        for (k, v) in &self.headers {
            w.str(k);
            w.str(v);
        }
        w.u8(event_status(self.status));
        w.opt_str(self.reason.as_deref());
        w.u64(self.body_bytes);
        w.opt(self.parent.as_ref(), Writer::uuid);
        w.u32(self.children.len() as u32);
        for c in &self.children {
            w.uuid(c);
        }
        w.opt(self.trace.as_ref(), |w, t| {
            w.u128(t.trace_id.0);
            w.u64(t.span_id.0);
            w.bool(t.sampled);
            w.opt_str(t.state.as_deref());
        });
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Bad> {
        let id = r.uuid()?;
        let bridge = r.str()?;
        let received_at_ms = r.u64()?;
        let method = r.str()?;
        let query = r.str()?;
        let n = r.count(8)?;
        let mut headers = Vec::with_capacity(n);
        for _ in 0..n {
            headers.push((r.str()?, r.str()?));
        }
        let status = read_event_status(r.u8()?)?;
        let reason = r.opt_str()?;
        let body_bytes = r.u64()?;
        let parent = r.opt(Reader::uuid)?;
        let n = r.count(16)?;
        let mut children = Vec::with_capacity(n);
        for _ in 0..n {
            children.push(r.uuid()?);
        }
        let trace = r.opt(|r| {
            Ok(TraceContext {
                trace_id: TraceId(r.u128()?),
                span_id: SpanId(r.u64()?),
                sampled: r.bool()?,
                state: r.opt_str()?,
            })
        })?;
        Ok(EventRecord {
            id,
            bridge,
            received_at_ms,
            method,
            query,
            headers,
            status,
            reason,
            body_bytes,
            parent,
            children,
            trace,
        })
    }
}

impl Binary for AttemptRecord {
    fn write(&self, w: &mut Writer) {
        w.u64(self.at_ms);
        w.u64(self.duration_ms);
        w.opt(self.status_code, Writer::u16);
        w.str(&self.response);
        w.opt_str(self.error.as_deref());
        w.opt(self.trace.as_ref(), |w, s| {
            w.u128(s.trace_id.0);
            w.u64(s.span_id.0);
        });
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, Bad> {
        Ok(AttemptRecord {
            at_ms: r.u64()?,
            duration_ms: r.u64()?,
            status_code: r.opt(Reader::u16)?,
            response: r.str()?,
            error: r.opt_str()?,
            trace: r.opt(|r| {
                Ok(SpanRef {
                    trace_id: TraceId(r.u128()?),
                    span_id: SpanId(r.u64()?),
                })
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(target: JobTarget, last_error: Option<&str>) -> JobRecord {
        JobRecord {
            event: Uuid::now_v7(),
            target,
            bridge: "payments/stripe".into(),
            status: JobStatus::Retrying,
            due_at_ms: 1_764_000_000_123,
            received_at_ms: 1_764_000_000_000,
            attempts: 3,
            attempts_at_queue: 1,
            last_error: last_error.map(str::to_string),
        }
    }

    fn event(full: bool) -> EventRecord {
        EventRecord {
            id: Uuid::now_v7(),
            bridge: "payments/stripe".into(),
            received_at_ms: 1_764_000_000_000,
            method: "POST".into(),
            query: if full {
                "a=1&b=é".into()
            } else {
                String::new()
            },
            headers: if full {
                vec![
                    ("content-type".into(), "application/json".into()),
                    ("webhook-id".into(), "msg_2x".into()),
                ]
            } else {
                Vec::new()
            },
            status: EventStatus::Filtered,
            reason: full.then(|| "type is not invoice.paid".into()),
            body_bytes: 1234,
            parent: full.then(Uuid::now_v7),
            children: if full {
                vec![Uuid::now_v7(), Uuid::now_v7()]
            } else {
                Vec::new()
            },
            trace: full.then(|| TraceContext {
                trace_id: TraceId(0x0af7651916cd43dd8448eb211c80319c),
                span_id: SpanId(0xb7ad6b7169203331),
                sampled: true,
                state: Some("vendor=1".into()),
            }),
        }
    }

    fn attempt(full: bool) -> AttemptRecord {
        AttemptRecord {
            at_ms: 1_764_000_000_500,
            duration_ms: 12,
            status_code: full.then_some(503),
            response: if full { "busy\n".into() } else { String::new() },
            error: full.then(|| "timed out".into()),
            trace: full.then_some(SpanRef {
                trace_id: TraceId(7),
                span_id: SpanId(9),
            }),
        }
    }

    fn round_trip<T: Binary + PartialEq + std::fmt::Debug>(v: T) {
        let raw = encode(&v);
        assert_eq!(raw[0], BINARY_V1);
        assert_eq!(decode::<T>(&raw).expect("binary").expect("decodes"), v);
        // Every shorter prefix is refused (nothing decodes from part of a record).
        for n in 1..raw.len() {
            assert!(
                matches!(decode::<T>(&raw[..n]), Some(Err(_))),
                "a prefix of {n} of {} bytes decoded",
                raw.len()
            );
        }
        let mut longer = raw.clone();
        longer.push(0);
        assert!(matches!(decode::<T>(&longer), Some(Err(e)) if e.contains("after the record")));
    }

    #[test]
    fn every_field_of_the_three_records_comes_back() {
        round_trip(job(JobTarget::Steps, None));
        round_trip(job(JobTarget::destination(2, "ledger"), Some("status 503")));
        round_trip(event(false));
        round_trip(event(true));
        round_trip(attempt(false));
        round_trip(attempt(true));
    }

    #[test]
    fn json_is_left_to_the_json_decoder_and_unknown_versions_are_refused() {
        let json = serde_json::to_vec(&job(JobTarget::Steps, None)).unwrap();
        assert!(decode::<JobRecord>(&json).is_none());
        assert!(decode::<JobRecord>(&[]).is_none());
        let mut raw = encode(&attempt(true));
        raw[0] = 9;
        assert!(matches!(decode::<AttemptRecord>(&raw), Some(Err(e)) if e.contains("version 9")));
    }

    #[test]
    fn a_corrupt_count_or_status_is_refused_without_allocating_for_it() {
        let mut raw = encode(&event(false));
        // The header count sits after the id, the bridge, the time, the method and the query.
        let at = 1 + 16 + 4 + "payments/stripe".len() + 8 + 4 + "POST".len() + 4;
        raw[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode::<EventRecord>(&raw), Some(Err(e)) if e.contains("cannot fit")));
        let mut raw = encode(&job(JobTarget::Steps, None));
        let at = 1 + 16 + 4 + 4 + 4 + "payments/stripe".len();
        raw[at] = 7;
        assert!(
            matches!(decode::<JobRecord>(&raw), Some(Err(e)) if e.contains("not a job status"))
        );
    }
}
