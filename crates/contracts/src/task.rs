//! Typed task payloads: which task name each message type is, and decoding a body by
//! task name when one queue carries several kinds of task.

use crate::{tasks, v1};

/// Why a body could not be turned into a [`Task`].
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// The `type` property named no task of this schema version.
    #[error("unknown task name {0:?}")]
    UnknownTask(String),
    /// The body is not a valid protobuf encoding of the named task's message.
    #[error("cannot decode {task_name} body: {source}")]
    Decode {
        task_name: &'static str,
        #[source]
        source: prost::DecodeError,
    },
}

/// A protobuf payload that knows which task it is.
///
/// Publishers route by [`TaskMessage::TASK_NAME`] (see [`tasks::queue_for`]) and send
/// [`TaskMessage::task_id`] as the AMQP `message_id`.
pub trait TaskMessage: prost::Message + Default + Send + Sync + 'static {
    /// The task name, one of [`tasks::ALL`].
    const TASK_NAME: &'static str;

    /// The task id (also the idempotency key).
    fn task_id(&self) -> &str;

    /// Decodes a body of this type.
    fn decode_body(body: &[u8]) -> Result<Self, ContractError> {
        Self::decode(body).map_err(|source| ContractError::Decode {
            task_name: Self::TASK_NAME,
            source,
        })
    }
}

macro_rules! task_messages {
    ($($variant:ident => $name:path),* $(,)?) => {
        $(
            impl TaskMessage for v1::$variant {
                const TASK_NAME: &'static str = $name;

                fn task_id(&self) -> &str {
                    &self.task_id
                }
            }
        )*

        /// Any task of schema version `v1`, for consumers of queues that carry several
        /// kinds of task.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Task {
            $($variant(v1::$variant),)*
        }

        impl Task {
            /// Decodes `body` as the message that `task_name` (the AMQP `type`) names.
            ///
            /// # Errors
            ///
            /// [`ContractError::UnknownTask`] for a name outside [`tasks::ALL`],
            /// [`ContractError::Decode`] for a malformed body. Both are permanent: a
            /// retry cannot fix them.
            pub fn decode(task_name: &str, body: &[u8]) -> Result<Self, ContractError> {
                match task_name {
                    $($name => v1::$variant::decode_body(body).map(Task::$variant),)*
                    other => Err(ContractError::UnknownTask(other.to_owned())),
                }
            }

            /// The task name, one of [`tasks::ALL`].
            pub fn task_name(&self) -> &'static str {
                match self {
                    $(Task::$variant(_) => <v1::$variant as TaskMessage>::TASK_NAME,)*
                }
            }

            /// The protobuf encoding of the payload, the AMQP message body.
            pub fn encode_body(&self) -> Vec<u8> {
                match self {
                    $(Task::$variant(m) => prost::Message::encode_to_vec(m),)*
                }
            }

            /// The task id carried in the body.
            pub fn task_id(&self) -> &str {
                match self {
                    $(Task::$variant(m) => m.task_id(),)*
                }
            }
        }

        $(
            impl From<v1::$variant> for Task {
                fn from(m: v1::$variant) -> Self {
                    Task::$variant(m)
                }
            }
        )*
    };
}

task_messages! {
    AnalyzeLogEntry => tasks::ANALYZE_LOG_ENTRY,
    BatchAnalyzeLogs => tasks::BATCH_ANALYZE_LOGS,
    DetectAnomalyPatterns => tasks::DETECT_ANOMALY_PATTERNS,
    AnalyzeRealTimeStream => tasks::ANALYZE_REAL_TIME_STREAM,
    SendPatternAlert => tasks::SEND_PATTERN_ALERT,
    SendCriticalAnomalyAlert => tasks::SEND_CRITICAL_ANOMALY_ALERT,
    CleanupOldResults => tasks::CLEANUP_OLD_RESULTS,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<M: TaskMessage + PartialEq + std::fmt::Debug + Clone>(msg: M) {
        let body = msg.encode_to_vec();
        assert_eq!(M::decode_body(&body).ok(), Some(msg.clone()));
        let task = Task::decode(M::TASK_NAME, &body);
        assert!(task.is_ok(), "{}: {task:?}", M::TASK_NAME);
        if let Ok(task) = task {
            assert_eq!(task.task_name(), M::TASK_NAME);
            assert_eq!(task.task_id(), msg.task_id());
        }
    }

    #[test]
    fn every_message_round_trips() {
        round_trip(v1::AnalyzeLogEntry {
            task_id: "t-1".into(),
            log_entry_id: 42,
        });
        round_trip(v1::BatchAnalyzeLogs {
            task_id: "t-2".into(),
            log_entry_ids: vec![1, 2, 3, i64::MAX],
        });
        round_trip(v1::DetectAnomalyPatterns {
            task_id: "t-3".into(),
            time_window_hours: 24,
        });
        round_trip(v1::AnalyzeRealTimeStream {
            task_id: "t-4".into(),
            log_entry_ids: vec![7, 8],
        });
        round_trip(v1::SendPatternAlert {
            task_id: "t-5".into(),
            pattern_detection_id: 9,
        });
        round_trip(v1::SendCriticalAnomalyAlert {
            task_id: "t-6".into(),
            log_entry_id: 10,
            anomaly_score: 0.97,
            summary: "novel template at ERROR".into(),
        });
        round_trip(v1::CleanupOldResults {
            task_id: "t-7".into(),
        });
    }

    #[test]
    fn task_names_are_distinct_and_listed() {
        let names = [
            v1::AnalyzeLogEntry::TASK_NAME,
            v1::BatchAnalyzeLogs::TASK_NAME,
            v1::DetectAnomalyPatterns::TASK_NAME,
            v1::AnalyzeRealTimeStream::TASK_NAME,
            v1::SendPatternAlert::TASK_NAME,
            v1::SendCriticalAnomalyAlert::TASK_NAME,
            v1::CleanupOldResults::TASK_NAME,
        ];
        let mut sorted = names.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        for name in names {
            assert!(tasks::ALL.contains(&name));
        }
    }

    #[test]
    fn unknown_names_and_bad_bodies_are_errors() {
        assert!(matches!(
            Task::decode("logs.tasks.nope", &[]),
            Err(ContractError::UnknownTask(_))
        ));
        // A field tag of 0 is invalid protobuf.
        assert!(matches!(
            Task::decode(tasks::ANALYZE_LOG_ENTRY, &[0x00, 0x01]),
            Err(ContractError::Decode { .. })
        ));
    }
}
