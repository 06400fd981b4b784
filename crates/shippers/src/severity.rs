//! Mapping the shippers' severities (OTLP severity numbers, level words, syslog and
//! pino/bunyan numbers) onto logcanary's five levels, so every protocol agrees on what
//! "warn" or 17 means.

/// The logcanary severity of an OTLP `severity_number` and/or a level text.
///
/// The number wins when it is 1..=24 (1-4 TRACE and 5-8 DEBUG -> `DEBUG`, 9-12 `INFO`,
/// 13-16 WARN -> `WARNING`, 17-20 `ERROR`, 21-24 FATAL -> `CRITICAL`); otherwise the text,
/// case-insensitive (`trace`/`debug`/`fine`/`finer`/`finest`, `info`/`information`/`notice`,
/// `warn`/`warning`, `err`/`error`/`severe`, `fatal`/`failure`/`critical`/`crit`/`alert`/
/// `emerg`/`emergency`/`panic`: the usual words, java.util.logging's and Blue Gene/L's);
/// with neither, `INFO`.
pub fn severity_from(number: Option<i32>, text: Option<&str>) -> &'static str {
    number
        .and_then(from_otlp_number)
        .or_else(|| text.and_then(from_text))
        .unwrap_or("INFO")
}

/// The logcanary severity of a syslog severity number: 0-2 (emerg, alert, crit)
/// `CRITICAL`, 3 `ERROR`, 4 `WARNING`, 5-6 (notice, info) `INFO`, 7 `DEBUG`. Numbers of 10
/// and above are read as pino/bunyan levels (10 trace, 20 debug, 30 info, 40 warn,
/// 50 error, 60 fatal); anything else is `INFO`.
pub fn severity_from_syslog(number: i64) -> &'static str {
    match number {
        0..=2 => "CRITICAL",
        3 => "ERROR",
        4 => "WARNING",
        5 | 6 => "INFO",
        7 => "DEBUG",
        10..=29 => "DEBUG",
        30..=39 => "INFO",
        40..=49 => "WARNING",
        50..=59 => "ERROR",
        60..=69 => "CRITICAL",
        _ => "INFO",
    }
}

fn from_otlp_number(number: i32) -> Option<&'static str> {
    match number {
        1..=8 => Some("DEBUG"),
        9..=12 => Some("INFO"),
        13..=16 => Some("WARNING"),
        17..=20 => Some("ERROR"),
        21..=24 => Some("CRITICAL"),
        _ => None,
    }
}

/// The severity a level word names, if it names one.
pub(crate) fn from_text(text: &str) -> Option<&'static str> {
    match text.trim().to_ascii_lowercase().as_str() {
        "trace" | "debug" | "fine" | "finer" | "finest" => Some("DEBUG"),
        "info" | "information" | "notice" => Some("INFO"),
        "warn" | "warning" => Some("WARNING"),
        "err" | "error" | "severe" => Some("ERROR"),
        "fatal" | "failure" | "critical" | "crit" | "alert" | "emerg" | "emergency" | "panic" => {
            Some("CRITICAL")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_otlp_number_range_maps_to_its_level() {
        let rows = [
            (1..=4, "DEBUG"),
            (5..=8, "DEBUG"),
            (9..=12, "INFO"),
            (13..=16, "WARNING"),
            (17..=20, "ERROR"),
            (21..=24, "CRITICAL"),
        ];
        for (range, level) in rows {
            for n in range {
                assert_eq!(severity_from(Some(n), Some("error")), level, "{n}");
            }
        }
    }

    #[test]
    fn each_level_word_maps_to_its_level_in_any_case() {
        let rows = [
            ("trace", "DEBUG"),
            ("debug", "DEBUG"),
            ("info", "INFO"),
            ("information", "INFO"),
            ("notice", "INFO"),
            ("warn", "WARNING"),
            ("warning", "WARNING"),
            ("fine", "DEBUG"),
            ("finest", "DEBUG"),
            ("err", "ERROR"),
            ("error", "ERROR"),
            ("severe", "ERROR"),
            ("fatal", "CRITICAL"),
            ("failure", "CRITICAL"),
            ("critical", "CRITICAL"),
            ("crit", "CRITICAL"),
            ("alert", "CRITICAL"),
            ("emerg", "CRITICAL"),
            ("emergency", "CRITICAL"),
            ("panic", "CRITICAL"),
        ];
        for (word, level) in rows {
            assert_eq!(severity_from(None, Some(word)), level, "{word}");
            assert_eq!(severity_from(Some(0), Some(&word.to_uppercase())), level);
        }
    }

    #[test]
    fn without_a_number_or_a_known_word_the_level_is_info() {
        assert_eq!(severity_from(None, None), "INFO");
        assert_eq!(severity_from(Some(0), None), "INFO");
        assert_eq!(severity_from(Some(0), Some("")), "INFO");
        assert_eq!(severity_from(None, Some("loud")), "INFO");
        assert_eq!(severity_from(Some(99), Some("warn")), "WARNING");
        assert_eq!(severity_from(Some(-3), None), "INFO");
    }

    #[test]
    fn syslog_numbers_map_to_their_level() {
        let rows = [
            (0, "CRITICAL"),
            (1, "CRITICAL"),
            (2, "CRITICAL"),
            (3, "ERROR"),
            (4, "WARNING"),
            (5, "INFO"),
            (6, "INFO"),
            (7, "DEBUG"),
            (8, "INFO"),
            (-1, "INFO"),
            (20, "DEBUG"),
            (30, "INFO"),
            (40, "WARNING"),
            (50, "ERROR"),
            (60, "CRITICAL"),
        ];
        for (n, level) in rows {
            assert_eq!(severity_from_syslog(n), level, "{n}");
        }
    }
}
