//! How settled the stream is: the share of its latest lines that started a template.
//!
//! A system that keeps meeting new messages (a desktop's chatter, a deploy rolling out)
//! makes no single new one surprising; one that had settled into its routine and says
//! something it never said before is the classic sign of a change. The prior's newness
//! counts for more in the second case (`ScorerConfig::settled_weight`). The count is this
//! scorer's (each replica counts the lines it scores) and starts afresh with the process.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Which of the stream's latest lines started a template.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub(super) struct Births {
    latest: VecDeque<bool>,
    /// How many of `latest` are `true`.
    new: usize,
}

impl Births {
    /// How settled the stream was before the line about to be counted, in [0, 1]: 1 when
    /// none of its latest `lines` lines started a template, falling linearly to 0 when
    /// `share` of them did; 0 until `lines` lines were counted.
    pub(super) fn settled(&self, lines: usize, share: f32) -> f32 {
        if lines == 0 || self.latest.len() < lines || share <= 0.0 {
            return 0.0;
        }
        #[allow(clippy::cast_precision_loss)] // a few hundred lines
        let new_share = self.new as f32 / self.latest.len() as f32;
        (1.0 - new_share / share).clamp(0.0, 1.0)
    }

    /// Counts one line, `born` if it started a template, keeping the latest `lines`.
    pub(super) fn record(&mut self, born: bool, lines: usize) {
        self.latest.push_back(born);
        self.new += usize::from(born);
        while self.latest.len() > lines {
            if self.latest.pop_front() == Some(true) {
                self.new -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_settled_once_its_latest_lines_brought_few_new_templates() {
        let mut births = Births::default();
        for _ in 0..9 {
            births.record(false, 10);
        }
        assert_eq!(births.settled(10, 0.2), 0.0, "not enough lines seen yet");
        births.record(true, 10);
        // 1 new in 10 lines: half of the share (0.2) that ends "settled".
        assert!((births.settled(10, 0.2) - 0.5).abs() < 1e-6);
        births.record(true, 10);
        assert_eq!(
            births.settled(10, 0.2),
            0.0,
            "2 in 10 is a stream meeting new messages"
        );
        for _ in 0..10 {
            births.record(false, 10);
        }
        assert_eq!(
            births.settled(10, 0.2),
            1.0,
            "the new ones have left the window"
        );
    }
}
