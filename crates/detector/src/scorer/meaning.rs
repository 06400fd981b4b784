//! What a template's words say: where its embedding falls between messages that read like
//! failures and routine ones, whatever the line's level.

/// Messages any operator reads as something going wrong, whatever the system. Their mean
/// embedding, against that of [`ROUTINE_PROTOTYPES`], gives the "failure" direction.
pub const FAILURE_PROTOTYPES: &[&str] = &[
    "authentication failure for user",
    "connection refused",
    "failed to open file: permission denied",
    "error while processing the request",
    "exception thrown: null pointer",
    "timed out waiting for a response",
    "no space left on device",
    "out of memory, process killed",
    "could not connect to the server",
    "fatal error, shutting down",
    "invalid password for user",
    "service unavailable",
    "segmentation fault",
    "corrupted block detected",
    "lost connection to node",
    "disk read error",
];

/// Everyday messages of healthy systems, the other end of the "failure" direction.
pub const ROUTINE_PROTOTYPES: &[&str] = &[
    "request completed successfully",
    "user logged in",
    "connection established",
    "starting service",
    "received block of size",
    "task finished",
    "heartbeat ok",
    "session opened for user",
    "configuration loaded",
    "listening on port",
    "cache hit",
    "sending response",
    "job scheduled",
    "file written",
    "node joined the cluster",
    "disk read completed",
];

/// The "failure" direction in embedding space and where the two prototype sets fall on it.
#[derive(Debug, Clone)]
pub(super) struct FailureAxis {
    axis: Vec<f32>,
    routine: f32,
    failure: f32,
}

impl FailureAxis {
    pub(super) fn from_embeddings(failure: &[Vec<f32>], routine: &[Vec<f32>]) -> Option<Self> {
        let mean = |vs: &[Vec<f32>]| -> Option<Vec<f32>> {
            let dim = vs.first()?.len();
            let mut m = vec![0.0; dim];
            for v in vs {
                for (a, b) in m.iter_mut().zip(v) {
                    *a += b / vs.len() as f32;
                }
            }
            Some(m)
        };
        let (f, r) = (mean(failure)?, mean(routine)?);
        let axis: Vec<f32> = f.iter().zip(&r).map(|(a, b)| a - b).collect();
        let project =
            |vs: &[Vec<f32>]| vs.iter().map(|v| plain_dot(v, &axis)).sum::<f32>() / vs.len() as f32;
        let (failure, routine) = (project(failure), project(routine));
        (failure > routine).then_some(Self {
            axis,
            routine,
            failure,
        })
    }

    /// 0 at or below the routine prototypes' mean, 1 at or beyond the failures'.
    pub(super) fn failure_likeness(&self, embedding: &[f32]) -> f32 {
        ((plain_dot(embedding, &self.axis) - self.routine) / (self.failure - self.routine))
            .clamp(0.0, 1.0)
    }
}

/// The plain dot product (no normalisation): a projection on a direction.
fn plain_dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
