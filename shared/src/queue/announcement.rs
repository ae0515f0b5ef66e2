//! What goes out on the finished channel ([`super::Keys::finished`]) when a job ends.
//!
//! Every end is announced by the job's id alone: the waiting API process then reads the job
//! from Postgres. A plan that succeeded is also announced, just before, with the row its
//! finishing statement committed and its result (`<id> <json>`), so that a process waiting on
//! it answers from the message and spends no read of its 12 KB result. Both go out, in that
//! order, on one connection, so a subscriber sees the document first; a build that knows only
//! the id ignores the document and still wakes on the id (a rolling deploy runs both).

use serde_json::value::RawValue;
use uuid::Uuid;

use super::Keys;
use crate::store::models::Simulation;

const UUID_LEN: usize = 36;

/// A plan's committed end, as a waiting request answers it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EndedPlan {
    pub job: Simulation,
    /// The stored document's text: the waiter passes it on as it is.
    pub result: Box<RawValue>,
}

/// The message that announces `job`'s success with its document.
pub fn encode_ended_plan(job: &Simulation, result: &RawValue) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Borrowed<'a> {
        job: &'a Simulation,
        result: &'a RawValue,
    }
    let mut message = format!("{} ", job.id).into_bytes();
    serde_json::to_writer(&mut message, &Borrowed { job, result })
        .expect("a job row and a JSON value always serialise");
    message
}

/// The job a message announces, and the document after it if there is one (not yet decoded:
/// only a process waiting on the job pays for that).
pub fn parse(message: &[u8]) -> Option<(Uuid, Option<&[u8]>)> {
    let id = std::str::from_utf8(message.get(..UUID_LEN)?).ok()?.parse::<Uuid>().ok()?;
    match &message[UUID_LEN..] {
        [] => Some((id, None)),
        [b' ', document @ ..] => Some((id, Some(document))),
        _ => None,
    }
}

/// A document of [`parse`], decoded; `None` if it is not one this build understands (the
/// waiter then reads the job as for an id alone).
pub fn decode_ended_plan(id: Uuid, document: &[u8]) -> Option<EndedPlan> {
    serde_json::from_slice::<EndedPlan>(document).ok().filter(|plan| plan.job.id == id)
}

/// Adds the announcement of `job`'s end to `pipe`: its document first when there is one, then
/// its id.
pub fn publish(pipe: &mut redis::Pipeline, keys: &Keys, job: Uuid, document: Option<&[u8]>) {
    let channel = keys.finished();
    if let Some(document) = document {
        pipe.cmd("PUBLISH").arg(&channel).arg(document).ignore();
    }
    pipe.cmd("PUBLISH").arg(&channel).arg(job.to_string()).ignore();
}
