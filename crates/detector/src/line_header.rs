//! Where the message starts in a masked line that still carries its line header.
//!
//! A shipper that does not parse lines (Promtail or Alloy without a parsing stage, a
//! `tail -F | curl` loop) sends `2015-10-18 18:01:47,978 INFO [main] o.a.h.MRAppMaster:
//! Created MRAppMaster` where the message is `Created MRAppMaster`. The header's words
//! come first in every template of that source and the sentence model reads them as much
//! as the message, so every template looks like every other and a new message no longer
//! looks new; and the header's varying parts (host, thread, level) split one message's
//! lines into several templates while its constant parts pull different messages together.
//! The miner ([`crate::drain`]) groups and the model reads what follows the header.
//! [`message_start`] finds the end of the two header shapes most lines have, from what
//! every such header carries, not from any one product's format:
//!
//! - a **level word** (`INFO`, `WARN`, `[error]`, ...) after the line's time, then the
//!   logger (`o.a.h.MRAppMaster:`, `nova.compute.manager`), thread and context in
//!   brackets (`[main]`, `[req-<UUID> - - -]`) and separators (`-`, `|`);
//! - a **syslog tag** (`sshd[<NUM>]:`, `crond(pam_unix)[<NUM>]:`, `kernel:`) after the
//!   line's time and host, then an optional level word.
//!
//! A container runtime's prefix (`<TS> stdout F`, as Kubernetes writes container logs) is
//! a header too; the container's own line, with its own header or none, follows it.
//!
//! A level word needs a value before it (the time, as `<TS>` or as numbers), a tag a
//! `<TS>`: a message that starts with `ERROR` or with `Change:` is not a header. A line
//! without either is read whole.

use crate::masking::is_value_token;
use crate::scorer::Severity;

/// How far into a line a header's level word or tag may sit (OpenStack's file name, time,
/// pid and level take 4 tokens; Thunderbird's syslog header 7).
const HEADER_TOKENS: usize = 8;

/// The level words a header uses besides those `Severity::parse` reads
/// ([`Severity::WORDS`]), upper case: INFO, NOTICE and PostgreSQL's LOG.
const INFO_WORDS: &[&str] = &["INFO", "LOG", "NOTICE"];

/// The index of the first word of the message in `words` (a masked template split on
/// spaces): just after the header when the line carries one, 0 otherwise.
pub fn message_start(words: &[&str]) -> usize {
    let mut seen_value = false;
    let mut seen_time = false;
    for (i, word) in words.iter().enumerate().take(HEADER_TOKENS) {
        if seen_time && matches!(*word, "stdout" | "stderr") {
            if let Some("F" | "P") = words.get(i + 1).copied() {
                // A container runtime's prefix (CRI, as Kubernetes writes container logs):
                // the line the container wrote follows, with its own header or none.
                let line = i + 2;
                return line + message_start(&words[line..]);
            }
        }
        if seen_value && is_level_word(word) {
            return skip_context(words, i + 1, true);
        }
        if seen_time && is_syslog_tag(word) {
            return skip_context(words, i + 1, false);
        }
        // A time of its own (`<TS>`, `[<TS>]`), not one inside a path or a name.
        let value = is_value_token(word);
        seen_time |= value && word.contains("<TS>");
        seen_value |= value;
    }
    0
}

/// After a level word or tag: skip separators, bracketed thread and context, one level
/// word and (after a level word) one logger name, in any order.
fn skip_context(words: &[&str], mut at: usize, after_level: bool) -> usize {
    let mut level_seen = after_level;
    let mut logger_seen = !after_level;
    while at < words.len() {
        let word = words[at];
        if matches!(word, "-" | "--" | "|" | ":" | "::") {
            at += 1;
        } else if word.starts_with('[') {
            match bracket_end(words, at) {
                Some(end) => at = end + 1,
                None => break,
            }
        } else if !level_seen && is_level_word(word) {
            level_seen = true;
            at += 1;
        } else if !logger_seen && is_logger(word) {
            logger_seen = true;
            at += 1;
        } else {
            break;
        }
    }
    // A message of values only (`initialised: #<NUM>#@#<NUM>#`) is not what the header
    // was in front of: read the line whole.
    if words[at..].iter().any(|w| is_word(w)) {
        at
    } else {
        0
    }
}

/// A token with a letter that is not a value (`<ID>`, `<NUM>ms`).
pub fn is_word(token: &str) -> bool {
    token.chars().any(char::is_alphabetic) && !is_value_token(token)
}

/// The index of the word that closes the bracket opened at `start`, within the header's
/// reach.
fn bracket_end(words: &[&str], start: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (i, word) in words.iter().enumerate().skip(start).take(HEADER_TOKENS) {
        depth += word.matches('[').count() as i32 - word.matches(']').count() as i32;
        if depth <= 0 {
            return Some(i);
        }
    }
    None
}

/// `INFO`, `WARN:`, `[error]`, `<ERROR>`: a level word in upper case, or in any case
/// when bracketed as Apache and nginx write it.
fn is_level_word(word: &str) -> bool {
    let bare = word.trim_end_matches(':');
    let (inner, bracketed) = match bare.strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
        Some(inner) => (inner, true),
        None => (bare, false),
    };
    let upper = inner.to_ascii_uppercase();
    let known = INFO_WORDS.contains(&upper.as_str())
        || Severity::WORDS.iter().any(|(level, _)| *level == upper);
    known && (bracketed || inner == upper)
}

/// A syslog tag: a program name with an optional `(detail)` and `[pid]`, then a colon
/// (`sshd[<NUM>]:`, `crond(pam_unix)[<NUM>]:`, `kernel:`).
fn is_syslog_tag(word: &str) -> bool {
    let Some(name) = word.strip_suffix(':') else {
        return false;
    };
    let name = match name.strip_suffix(']') {
        Some(rest) => match rest.rfind('[') {
            Some(open) => &rest[..open],
            None => return false,
        },
        None => name,
    };
    let name = match name.strip_suffix(')') {
        Some(rest) => match rest.find('(') {
            Some(open) => &rest[..open],
            None => return false,
        },
        None => name,
    };
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '@'))
}

/// A logger name: `org.apache.hadoop.ipc.Client:`, `dfs.DataNode$DataXceiver:`, a masked
/// `<ID>:`, or dotted without a colon as OpenStack writes it (`nova.compute.manager`).
fn is_logger(word: &str) -> bool {
    let identifier = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '.' | '-' | '<' | '>')
            })
    };
    match word.strip_suffix(':') {
        Some(name) => identifier(name),
        None => {
            identifier(word)
                && word.split('.').count() >= 2
                && word
                    .split('.')
                    .all(|part| part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::message_start;

    fn message(template: &str) -> String {
        let words: Vec<&str> = template.split(' ').collect();
        words[message_start(&words)..].join(" ")
    }

    #[test]
    fn level_headers_end_after_logger_thread_and_context() {
        for (line, expected) in [
            (
                "<TS> INFO [main] org.apache.hadoop.mapreduce.v2.app.MRAppMaster: Created MRAppMaster for application <ID>",
                "Created MRAppMaster for application <ID>",
            ),
            (
                "<TS> WARN [RMCommunicator Allocator] <ID>: Address change detected.",
                "Address change detected.",
            ),
            ("<NUM>/<NUM>/<NUM> <TS> INFO executor.Executor: Running task <NUM>", "Running task <NUM>"),
            (
                "<TS> - WARN [QuorumPeer[myid=<NUM>]/<IP>:QuorumCnxManager@<NUM>] - Cannot open channel to <NUM>",
                "Cannot open channel to <NUM>",
            ),
            (
                "nova-compute.log.<NUM>.<TS> <TS> <NUM> INFO nova.compute.manager [req-<UUID> <HEX> - - -] [instance: <UUID>] Took <NUM> to build instance.",
                "Took <NUM> to build instance.",
            ),
            ("[<TS>] [error] [client <IP>] Directory index forbidden by rule: <PATH>", "Directory index forbidden by rule: <PATH>"),
            ("[<TS>] [notice] workerEnv.init() ok <PATH>", "workerEnv.init() ok <PATH>"),
            (
                "<NUM> <NUM> <NUM> INFO dfs.DataNode$PacketResponder: PacketResponder <NUM> terminating",
                "PacketResponder <NUM> terminating",
            ),
            // Formats outside the Loghub samples: Python's logging, nginx's error log, log4j.
            ("<TS> - app.db - ERROR - connection refused", "connection refused"),
            ("<TS> [error] <NUM>#<NUM>: *<NUM> open() failed", "<NUM>#<NUM>: *<NUM> open() failed"),
            ("<TS> ERROR [pool-<NUM>-thread-<NUM>] c.e.Billing - charge failed", "charge failed"),
            // PostgreSQL, Kafka.
            ("<TS> UTC [<NUM>] ERROR: relation <STR> does not exist", "relation <STR> does not exist"),
            ("<TS> UTC [<NUM>] LOG: checkpoint starting: time", "checkpoint starting: time"),
            (
                "[<TS>] WARN [ReplicaFetcher replicaId=<NUM>] Error sending fetch request",
                "Error sending fetch request",
            ),
        ] {
            assert_eq!(message(line), expected, "{line}");
        }
    }

    #[test]
    fn syslog_headers_end_after_the_tag() {
        for (line, expected) in [
            (
                "<TS> LabSZ sshd[<NUM>]: Failed password for root from <IP>",
                "Failed password for root from <IP>",
            ),
            (
                "<TS> combo sshd(pam_unix)[<NUM>]: session opened for user test",
                "session opened for user test",
            ),
            (
                "- <NUM> <ID> <TS> <ID>/<ID> crond(pam_unix)[<NUM>]: session closed for user root",
                "session closed for user root",
            ),
            (
                "- <NUM> aadmin2 <TS> src@aadmin2 dhcpd: DHCPDISCOVER from <MAC>",
                "DHCPDISCOVER from <MAC>",
            ),
            (
                "<TS> node-<NUM> hadoop[<NUM>]: INFO Created MRAppMaster",
                "Created MRAppMaster",
            ),
            (
                "<TS> host kernel[<NUM>]: ARPT: <NUM>: wl0: MDNS",
                "ARPT: <NUM>: wl0: MDNS",
            ),
        ] {
            assert_eq!(message(line), expected, "{line}");
        }
    }

    #[test]
    fn a_container_runtime_prefix_is_a_header_before_the_containers_own() {
        for (line, expected) in [
            (
                "<TS> stdout F <TS> INFO [main] org.example.App: Started in <NUM> s",
                "Started in <NUM> s",
            ),
            // klog's header is values only: the model skips them (`embedding_text`).
            (
                "<TS> stderr F <ID> <TS> <NUM> <HOST>] attempting to acquire leader lease",
                "<ID> <TS> <NUM> <HOST>] attempting to acquire leader lease",
            ),
            (
                "<TS> stdout P partial line of a long one",
                "partial line of a long one",
            ),
        ] {
            assert_eq!(message(line), expected, "{line}");
        }
    }

    #[test]
    fn messages_without_a_timed_header_are_read_whole() {
        for line in [
            "ERROR IN CONTACTING RM.",
            "Component State Change: Component <STR> is in the unavailable state",
            "<NUM> failures on node <HOST>",
            "<IP> \"GET /openstack/<TS>/meta_data.json HTTP/<NUM>\" status: <NUM> len: <NUM>",
            "connection from <IP> (<HOST>) at <TS>",
            "PacketResponder <NUM> for block <ID> terminating",
            // Nothing after the header, or values only: the line is read whole.
            "<TS> INFO [main]",
            "<NUM>-ioctl (<TS>) initialised: #<NUM>#@#<NUM>#",
        ] {
            assert_eq!(message(line), line);
        }
    }
}
