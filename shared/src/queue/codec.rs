//! What a queue entry carries and how workers read it: only the job's id (the worker reads the
//! request from Postgres, so a change of request schema can never poison the queue), decoded
//! leniently so that an entry that is not a job is logged and acknowledged instead of ending
//! the worker, as a decode error would.

use apalis_core::backend::codec::Codec;
use serde::{Deserialize, Serialize};
use ulid::Ulid;
use uuid::Uuid;

/// What the API pushes: the id of a `simulations` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimulationJob {
    pub id: Uuid,
}

/// What a worker receives: a job, or an entry it could not make sense of (kept so it can be
/// logged and acknowledged instead of crashing the worker, as a decode error would).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobEnvelope {
    Job(SimulationJob),
    Undecodable(String),
}

/// JSON codec that never fails to decode: anything that is not a job becomes
/// [`JobEnvelope::Undecodable`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LenientJsonCodec;

impl Codec<JobEnvelope> for LenientJsonCodec {
    type Error = serde_json::Error;
    type Compact = Vec<u8>;

    fn encode(&self, value: &JobEnvelope) -> Result<Vec<u8>, Self::Error> {
        match value {
            JobEnvelope::Job(job) => serde_json::to_vec(job),
            JobEnvelope::Undecodable(raw) => Ok(raw.clone().into_bytes()),
        }
    }

    fn decode(&self, bytes: &Vec<u8>) -> Result<JobEnvelope, Self::Error> {
        Ok(match serde_json::from_slice::<SimulationJob>(bytes) {
            Ok(job) => JobEnvelope::Job(job),
            Err(e) => {
                let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
                JobEnvelope::Undecodable(format!("{e}: {shown:?}"))
            }
        })
    }
}

/// The queue task id of a job: its UUID (v7) re-read as a ULID, so the reconciler can find a
/// job's entry from its row alone.
pub fn task_id(job: Uuid) -> Ulid {
    Ulid::from(job.as_u128())
}

/// The job of a queue task id.
pub fn job_id(task: Ulid) -> Uuid {
    Uuid::from_u128(task.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_id_survives_the_trip_through_a_queue_task_id() {
        let id = Uuid::now_v7();
        assert_eq!(job_id(task_id(id)), id);
        // UUIDv7 and ULID both start with the millisecond timestamp.
        let ms = id.get_timestamp().unwrap().to_unix();
        let ms = ms.0 * 1000 + u64::from(ms.1) / 1_000_000;
        assert_eq!(task_id(id).timestamp_ms(), ms);
    }

    #[test]
    fn the_lenient_codec_turns_garbage_into_an_undecodable_envelope() {
        let codec = LenientJsonCodec;
        let id = Uuid::now_v7();
        let bytes = codec.encode(&JobEnvelope::Job(SimulationJob { id })).unwrap();
        assert_eq!(codec.decode(&bytes).unwrap(), JobEnvelope::Job(SimulationJob { id }));
        assert!(matches!(
            codec.decode(&b"\xff\x00garbage".to_vec()).unwrap(),
            JobEnvelope::Undecodable(_)
        ));
        assert!(matches!(codec.decode(&b"42".to_vec()).unwrap(), JobEnvelope::Undecodable(_)));
    }
}
