//! Masking: replace the variable parts of a log message with named placeholders.
//!
//! Masking runs before template mining so that lines differing only in an address, a
//! number or an identifier look identical to the miner, and so that the text embedded by the
//! sentence model is about the *kind* of message rather than its values. Placeholders are
//! written `<NAME>` (`<IP>`, `<NUM>`, ...); [`is_placeholder_token`] recognises them.
//!
//! The rules are deliberately generic (nothing tuned to one log source): an ordered list of
//! regular expressions, most specific first, followed by one heuristic that treats any
//! remaining word containing a digit as an identifier. The order matters: a UUID contains
//! hex runs and numbers, an IP contains numbers, so the wider patterns must win first.

use once_cell::sync::Lazy;
use regex::Regex;

/// One masking rule: what it matches and the placeholder that replaces it.
struct Rule {
    regex: Regex,
    placeholder: &'static str,
    /// Extra check on a match that a regular expression without look-around cannot express.
    accept: fn(&str) -> bool,
}

fn rule(pattern: &str, placeholder: &'static str) -> Rule {
    Rule {
        // The patterns are literals in this file; a typo is a programming error caught by
        // the unit tests, never something input can trigger.
        regex: Regex::new(pattern).expect("masking regex literal compiles"),
        placeholder,
        accept: |_| true,
    }
}

fn rule_if(pattern: &str, placeholder: &'static str, accept: fn(&str) -> bool) -> Rule {
    Rule {
        accept,
        ..rule(pattern, placeholder)
    }
}

static RULES: Lazy<Vec<Rule>> = Lazy::new(|| {
    vec![
        // Quoted single values ("/tmp/x", 'job-42', "a.b.c") are values; quoted prose
        // ("GET /v2/servers HTTP/1.1", 'Inactive') keeps its words, because which word it
        // is usually tells two different messages apart. The inner values of quoted prose
        // are still masked by the rules below.
        rule_if(r#""[^"\s]*""#, "<STR>", quoted_value),
        rule_if(r"'[^'\s]+'", "<STR>", quoted_value),
        rule(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s,;)\]]+", "<URL>"),
        rule(r"\b[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+\b", "<EMAIL>"),
        rule(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
            "<UUID>",
        ),
        rule(r"\b(?:[0-9a-fA-F]{2}[:\-]){5}[0-9a-fA-F]{2}\b", "<MAC>"),
        // ISO-like timestamps and clock times inside messages, with the separators the
        // eval's timestamp parser accepts too: `2005-06-03-15.42.50.675872` (the IBM/DB2
        // form Blue Gene/L logs carry) is one value, not a date and a number.
        rule(
            r"\b\d{4}-\d{2}-\d{2}(?:[T _\-]\d{2}[:.]\d{2}(?:[:.]\d{2}(?:[.,]\d+)?)?(?:Z|[+\-]\d{2}:?\d{2})?)?\b",
            "<TS>",
        ),
        // Syslog / ctime style: "Fri Jun 17 07:07:00 2005", "Jun 17 07:07:00".
        rule(
            r"\b(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\s+)?(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+\d{1,2}\s+\d{1,2}:\d{2}:\d{2}(?:\s+\d{4})?\b",
            "<TS>",
        ),
        rule(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b", "<TS>"),
        // IPv4 with optional port; IPv6 (at least three groups, to spare `a:b` pairs).
        rule(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b", "<IP>"),
        rule(
            r"(?:\b[0-9a-fA-F]{1,4}|)(?::[0-9a-fA-F]{0,4}){2,7}:[0-9a-fA-F]{1,4}\b",
            "<IP>",
        ),
        // host:port and fully qualified host names with a common top-level domain.
        rule(
            r"\b[A-Za-z0-9][A-Za-z0-9\-]*(?:\.[A-Za-z0-9\-]+)+:\d{1,5}\b",
            "<HOST>",
        ),
        rule(
            r"\b(?:[A-Za-z0-9\-]+\.)+(?:com|net|org|edu|gov|mil|io|cn|hk|jp|de|uk|fr|ru|br|au|local|lan|internal|corp)\b",
            "<HOST>",
        ),
        // Unix paths with at least two components, and Windows paths.
        rule(
            r#"(?:^|[\s=(\[:,"'])(?:~|\.{1,2})?(?:/[\w.\-@+%~$]+){2,}/?"#,
            "<PATH>",
        ),
        rule(r"\b[A-Za-z]:\\[^\s]+", "<PATH>"),
        rule(r"\b0[xX][0-9a-fA-F]+\b", "<HEX>"),
        // Long hex runs (hashes, object ids) that contain at least one digit and one letter
        // a-f: pure words like "deadbeef" are left alone, pure numbers become <NUM> below.
        // Short ones ("b2") are left to the digit-word rule.
        rule_if(r"\b[0-9a-fA-F]{6,}\b", "<HEX>", |m| {
            m.bytes().any(|b| b.is_ascii_digit()) && m.bytes().any(|b| b.is_ascii_alphabetic())
        }),
        // Numbers with optional comparator or sign, decimals and a unit (10ms, 5.2GB, 97%,
        // "<1 sec", "3 seconds"): a duration is one value whether it is written "00:01" or
        // "<1 sec", so a spelled-out time unit goes with its number.
        rule(
            r"(?:[<>~]=?)?(?:\b|[+\-])\d+(?:[.,]\d+)*(?:[a-zA-Z]{1,3}\b|%)?(?:\s+(?:secs?|seconds?|msecs?|millis|milliseconds?|mins?|minutes?|hours?|hrs?)\b)?",
            "<NUM>",
        ),
    ]
});

/// A quoted token is a value when it holds something other than plain letters: digits,
/// separators, dots (file names, ids, class names). Plain words are enum-like constants.
fn quoted_value(quoted: &str) -> bool {
    let inner = quoted.trim_matches(|c| c == '"' || c == '\'');
    inner.is_empty()
        || !inner
            .chars()
            .all(|c| c.is_alphabetic() || c == '_' || c == '-')
}

/// A word still containing a digit after the rules above: an identifier such as
/// `job_1445144423722_0020` or `blk_<NUM>x9`. Treating such words as variables is the
/// single most effective generic rule for log template mining.
static DIGIT_WORD: Lazy<Regex> = Lazy::new(|| {
    Regex::new(r"[A-Za-z0-9_.\-]*[0-9][A-Za-z0-9_.\-]*").expect("digit-word regex literal compiles")
});

/// Letters followed by one digit ("ssh2", "SOCKS5", "IPV6", "eth0", "ext3") name a protocol
/// or device rather than an instance: keep them, they tell messages apart.
fn is_versioned_name(word: &str) -> bool {
    let bytes = word.as_bytes();
    match bytes.split_last() {
        Some((last, head)) => {
            last.is_ascii_digit() && head.len() >= 2 && head.iter().all(u8::is_ascii_alphabetic)
        }
        None => false,
    }
}

/// Runs of placeholders joined by separators (`<NUM>.<NUM>`, `<IP>,<IP>`) mean one value
/// (or one list of values); the run keeps the first placeholder's name.
static PLACEHOLDER_RUN: Lazy<Regex> = Lazy::new(|| {
    Regex::new(r"(<(?:NUM|HEX|ID|IP|HOST)>)(?:[.\-_:,]<(?:NUM|HEX|ID|IP|HOST)>)+")
        .expect("placeholder-run regex literal compiles")
});

/// A parenthetical restating a quantity in another unit ("1024 bytes (1 KB)"): optional
/// detail that some lines carry and others do not, which would split one message in two.
static ANNOTATION: Lazy<Regex> = Lazy::new(|| {
    Regex::new(r"\s*\(<NUM>\s*[A-Za-z%]{0,5}\)").expect("annotation regex literal compiles")
});

/// The placeholders [`mask`] can produce.
pub const PLACEHOLDERS: &[&str] = &[
    "<STR>", "<URL>", "<EMAIL>", "<HOST>", "<UUID>", "<MAC>", "<TS>", "<IP>", "<PATH>", "<HEX>",
    "<NUM>", "<ID>", "<*>",
];

/// Whether `token` is exactly one placeholder (`<IP>`, `<NUM>`, the miner's `<*>`, ...).
pub fn is_placeholder_token(token: &str) -> bool {
    PLACEHOLDERS.contains(&token)
}

/// Mask the variable parts of `message` and collapse whitespace to single spaces.
///
/// Pure and deterministic: the same input always gives the same output, on every replica,
/// which the template ids in [`crate::drain`] rely on.
pub fn mask(message: &str) -> String {
    let mut text = message.trim().to_string();
    for rule in RULES.iter() {
        if rule.regex.is_match(&text) {
            text = replace_keeping_prefix(rule, &text);
        }
    }
    if text.bytes().any(|b| b.is_ascii_digit()) {
        text = DIGIT_WORD
            .replace_all(&text, |caps: &regex::Captures<'_>| {
                let word = &caps[0];
                if is_versioned_name(word) {
                    word.to_string()
                } else {
                    "<ID>".to_string()
                }
            })
            .into_owned();
    }
    if text.contains(">") {
        text = PLACEHOLDER_RUN.replace_all(&text, "$1").into_owned();
        text = ANNOTATION.replace_all(&text, "").into_owned();
    }
    collapse_repeats(&text)
}

/// The longest group of tokens that [`collapse_repeats`] sees as one record of a list.
const MAX_RECORD_TOKENS: usize = 4;

/// Join tokens with single spaces, collapsing a list of values into one record: a run of
/// the same value (`<ID> <ID> <ID>`, `<NUM>/<NUM> <NUM>/<NUM>`), or of the same group of
/// up to [`MAX_RECORD_TOKENS`] tokens holding a value (`<ID> <HEX> <ok> <ID> <HEX> <ok>`,
/// `<ID> -> <ID> -> <ID>`), keeps one copy. Lists have varying lengths, and the miner only
/// compares lines with the same number of tokens, so without this one message would be
/// a template per list length.
fn collapse_repeats(text: &str) -> String {
    let mut tokens: Vec<&str> = Vec::with_capacity(text.len() / 4 + 1);
    for token in text.split_whitespace() {
        tokens.push(token);
        let n = tokens.len();
        for period in 1..=MAX_RECORD_TOKENS.min(n / 2) {
            // The cheap test first: the token a record earlier is the same one.
            if tokens[n - 1 - period] != token {
                continue;
            }
            let (earlier, last) = tokens[n - 2 * period..].split_at(period);
            if earlier == last && last.iter().any(|t| is_value_token(t)) {
                tokens.truncate(n - period);
                break;
            }
        }
    }
    tokens.join(" ")
}

/// A token that is only values: placeholders, and punctuation between them (`<IP>`,
/// `<NUM>/<NUM>`, `<ID>=<HEX>`), no word of its own.
pub fn is_value_token(token: &str) -> bool {
    let mut rest = token;
    let mut any = false;
    while let Some(start) = rest.find('<') {
        if rest[..start].chars().any(char::is_alphanumeric) {
            return false;
        }
        let after = &rest[start..];
        match PLACEHOLDERS.iter().find(|p| after.starts_with(*p)) {
            Some(p) => {
                any = true;
                rest = &after[p.len()..];
            }
            None => return false,
        }
    }
    any && !rest.chars().any(char::is_alphanumeric)
}

/// Whether `text` ends with a whole placeholder (`... <TS>`).
fn ends_with_placeholder(text: &str) -> bool {
    PLACEHOLDERS.iter().any(|p| text.ends_with(p))
}

/// Replace each match with `placeholder`, but keep a leading separator character that the
/// pattern consumed only to anchor itself (paths match `=/x/y` so that `key=/x/y` keeps
/// its key; numbers match `-5` so that the sign goes too but `a-5` keeps the dash).
fn replace_keeping_prefix(rule: &Rule, text: &str) -> String {
    let placeholder = rule.placeholder;
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in rule.regex.find_iter(text) {
        let matched = m.as_str();
        if !(rule.accept)(matched) {
            continue;
        }
        out.push_str(&text[last..m.start()]);
        if let Some(first) = matched.chars().next() {
            let anchored = matches!(first, ' ' | '\t' | '=' | '(' | '[' | ':' | ',' | '"' | '\'');
            if anchored && placeholder == "<PATH>" {
                out.push(first);
            } else if first == '>' && ends_with_placeholder(&text[..=m.start()]) {
                // The comparator the number pattern allows ("<1 sec", ">5") was the end
                // of a placeholder an earlier rule wrote ("<TS>-5"): it stays.
                out.push(first);
            } else if first == '-' || first == '+' {
                // A sign directly after a word character makes the whole word an
                // identifier ("blk_-123", "node-5"): leave it for the digit-word rule, so
                // that "blk_-1" and "blk_1" mask the same way.
                let prev = text[..m.start()].chars().next_back();
                if prev.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    out.push_str(matched);
                    last = m.end();
                    continue;
                }
            }
        }
        out.push_str(placeholder);
        last = m.end();
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_become_num() {
        assert_eq!(mask("slot 10 of 42"), "slot <NUM> of <NUM>");
        assert_eq!(mask("took 3.5 seconds"), "took <NUM>");
        assert_eq!(mask("lifetime <1 sec"), "lifetime <NUM>");
        assert_eq!(mask("lifetime 00:01"), "lifetime <NUM>");
        assert_eq!(mask("offset -12 bytes"), "offset <NUM> bytes");
        assert_eq!(mask("took 250ms"), "took <NUM>");
        assert_eq!(mask("disk at 97% full"), "disk at <NUM> full");
    }

    #[test]
    fn keys_survive_masking_of_their_values() {
        assert_eq!(mask("uid=0 euid=1000"), "uid=<NUM> euid=<NUM>");
        assert_eq!(
            mask("size = 12,totalTime = 3"),
            "size = <NUM>,totalTime = <NUM>"
        );
    }

    #[test]
    fn hex_values() {
        assert_eq!(mask("at 0x7fff5fbff8c8"), "at <HEX>");
        assert_eq!(mask("commit 3fa9b2c1d4e5"), "commit <HEX>");
        // A plain word made of hex letters is not a value.
        assert_eq!(mask("beef added"), "beef added");
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(
            mask("Connection to 10.0.0.12 closed"),
            "Connection to <IP> closed"
        );
        assert_eq!(mask("from 183.62.140.253:22"), "from <IP>");
        assert_eq!(mask("src /10.250.19.102:50010"), "src /<IP>");
        assert_eq!(
            mask("listening on fe80::1ff:fe23:4567:890a"),
            "listening on <IP>"
        );
    }

    #[test]
    fn uuids() {
        assert_eq!(
            mask("instance 3edec1e4-9678-4a3a-a21b-a145a4ee5e61 spawned"),
            "instance <UUID> spawned"
        );
    }

    #[test]
    fn paths() {
        assert_eq!(
            mask("Error loading /usr/lib/libfoo.so: denied"),
            "Error loading <PATH>: denied"
        );
        assert_eq!(mask("file=/var/log/app.log"), "file=<PATH>");
        assert_eq!(mask(r"open C:\Windows\system32\x.dll"), "open <PATH>");
        // A single slash-separated word is not a path ("read/write", "I/O").
        assert_eq!(mask("I/O error"), "I/O error");
    }

    #[test]
    fn quoted_strings() {
        assert_eq!(
            mask(r#"open "/tmp/a b.txt" failed"#),
            r#"open "<PATH> b.txt" failed"#
        );
        assert_eq!(mask(r#"file "report-7.pdf" saved"#), "file <STR> saved");
        assert_eq!(mask("service 'org.example.Api' up"), "service <STR> up");
        assert_eq!(mask(r#"read "" bytes"#), "read <STR> bytes");
        // Quoted plain words are enum-like constants and stay.
        assert_eq!(mask("icon in state 'Inactive'"), "icon in state 'Inactive'");
        // Quoted prose keeps its words; values inside are masked.
        assert_eq!(
            mask(r#"10.1.1.1 "GET /v2/abc/servers HTTP/1.1" status: 200"#),
            r#"<IP> "GET <PATH> HTTP/<NUM>" status: <NUM>"#
        );
        // Apostrophes in prose are not quotes.
        assert_eq!(mask("Can't find child"), "Can't find child");
    }

    #[test]
    fn urls_emails_macs_and_times() {
        assert_eq!(
            mask("GET https://example.com/a?b=1 failed"),
            "GET <URL> failed"
        );
        assert_eq!(mask("mail to ops@example.com"), "mail to <EMAIL>");
        assert_eq!(mask("hw 00:1a:2b:3c:4d:5e up"), "hw <MAC> up");
        assert_eq!(mask("at 2024-01-05T10:11:12Z ok"), "at <TS> ok");
        assert_eq!(mask("at 10:11:12 ok"), "at <TS> ok");
        assert_eq!(mask("at Fri Jun 17 07:07:00 2005 ok"), "at <TS> ok");
        // The IBM/DB2 form (Blue Gene/L), and a date followed by a signed number.
        assert_eq!(mask("at 2005-06-03-15.42.50.675872 ok"), "at <TS> ok");
        assert_eq!(mask("on 2024-01-05_10:11:12 ok"), "on <TS> ok");
        assert_eq!(mask("on 2024-01-05-7 ok"), "on <TS><NUM> ok");
        assert_eq!(mask("lifetime >5 sec"), "lifetime <NUM>");
    }

    #[test]
    fn words_with_digits_are_identifiers() {
        assert_eq!(mask("job_1445144423722_0020 started"), "<ID> started");
        assert_eq!(mask("block blk_-1608999687919862906"), "block <ID>");
        assert_eq!(mask("node-129 up"), "<ID> up");
        assert_eq!(mask("via ssh2 on eth0"), "via ssh2 on eth0");
        assert_eq!(mask("child 6725 in jk2_init()"), "child <NUM> in <ID>()");
    }

    #[test]
    fn hosts() {
        assert_eq!(mask("proxy.cse.cuhk.edu.hk:5070 open"), "<HOST> open");
        assert_eq!(
            mask("rhost=ppp-1.hinet-ip.hinet.net user=root"),
            "rhost=<HOST> user=root"
        );
        assert_eq!(mask("resolved mail.example.com"), "resolved <HOST>");
    }

    #[test]
    fn lists_of_values_collapse() {
        assert_eq!(mask("delete blk_1 blk_-2 blk_3"), "delete <ID>");
        assert_eq!(mask("speeds 1 2 3 **** 5"), "speeds <NUM> **** <NUM>");
        assert_eq!(mask("from 10.0.0.1,10.0.0.2 ok"), "from <IP> ok");
        assert_eq!(mask("v 1.2/3 ok"), "v <NUM>/<NUM> ok");
        assert_eq!(mask("sent 2048 bytes (2 KB) ok"), "sent <NUM> bytes ok");
        assert_eq!(
            mask("ratios 1/2 3/4 5/6 and more"),
            "ratios <NUM>/<NUM> and more"
        );
    }

    #[test]
    fn lists_of_records_collapse_to_one_record() {
        let short = mask("inconsistent nodesets node-1 0x0001edfe <ok> node-2 0x1001fdfe <ok>");
        let long = mask(
            "inconsistent nodesets node-1 0x0001edfe <ok> node-2 0x1001fdfe <ok> \
             node-3 0x1001fdfe <ok> node-4 0x1001fdfe <ok> node-5 0x1001fdfe <ok>",
        );
        assert_eq!(short, "inconsistent nodesets <ID> <HEX> <ok>");
        assert_eq!(long, short);
        assert_eq!(mask(&short), short, "masking a masked list changes nothing");
        assert_eq!(mask("route a1x -> b2x -> c3x"), "route <ID> -> <ID>");
    }

    #[test]
    fn repeated_words_are_not_a_list() {
        // Only groups holding a value collapse: prose that repeats itself stays as written.
        assert_eq!(mask("very very slow"), "very very slow");
        assert_eq!(mask("ok ok ok"), "ok ok ok");
        assert_eq!(
            mask("from 10.0.0.1 port 22 to 10.0.0.2 port 23"),
            "from <IP> port <NUM> to <IP> port <NUM>"
        );
        assert!(is_value_token("<ID>=<HEX>"));
        assert!(!is_value_token("key=<NUM>"));
        assert!(!is_value_token("<ok>"));
    }

    #[test]
    fn whitespace_is_normalised_and_masking_is_idempotent() {
        let once = mask("  a   10.0.0.1\tport 22  ");
        assert_eq!(once, "a <IP> port <NUM>");
        assert_eq!(mask(&once), once);
    }

    #[test]
    fn placeholder_tokens_are_recognised() {
        assert!(is_placeholder_token("<IP>"));
        assert!(is_placeholder_token("<*>"));
        assert!(!is_placeholder_token("<b>"));
        assert!(!is_placeholder_token("key=<NUM>"));
    }
}
