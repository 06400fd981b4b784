//! How settled the stream is: the share of its latest lines that started a template.
//!
//! A system that keeps meeting new messages (a desktop's chatter, a deploy rolling out)
//! makes no single new one surprising; one that had settled into its routine and says
//! something it never said before is the classic sign of a change. The prior's newness
//! counts for more in the second case (`ScorerConfig::settled_weight`).
//!
//! Each scorer counts the lines it scores. Replicas share the count through the database
//! (the scoring crate's `stream_births`): a replica hands the lines it counted since it
//! last did to the shared count ([`Scorer::take_births`](super::Scorer::take_births)),
//! and takes the shared count as its own when it pulls
//! ([`Scorer::rebase_births`](super::Scorer::rebase_births)), so every replica judges
//! how settled the stream is by every replica's lines, and a restarted worker does not
//! start counting afresh.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Lines counted since the last hand-over ([`Births::take`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BirthChunk {
    /// How many lines.
    pub lines: u64,
    /// The offsets (from 0, the chunk's first line) of those that started a template,
    /// ascending; only among the chunk's latest lines this scorer still holds (the
    /// latest `settled_lines`: older ones cannot count again).
    pub births: Vec<u64>,
}

/// The whole stream's count as every replica handed it over.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SharedBirths {
    /// Lines counted in all.
    pub lines: u64,
    /// Positions (from 0, the stream's first line) of the lines that started a template
    /// among the latest ones, ascending.
    pub births: Vec<u64>,
}

/// Which of the stream's latest lines started a template.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub(super) struct Births {
    latest: VecDeque<bool>,
    /// How many of `latest` are `true`.
    new: usize,
    /// Lines counted in all (`latest` holds the last of them).
    #[serde(default)]
    counted: u64,
    /// `counted` at the last [`Births::take`].
    #[serde(default)]
    taken: u64,
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
        self.counted += 1;
        self.push(born, lines);
    }

    fn push(&mut self, born: bool, lines: usize) {
        self.latest.push_back(born);
        self.new += usize::from(born);
        while self.latest.len() > lines {
            if self.latest.pop_front() == Some(true) {
                self.new -= 1;
            }
        }
    }

    /// The lines counted since the last call.
    pub(super) fn take(&mut self) -> BirthChunk {
        let lines = self.counted - self.taken;
        let held = (self.latest.len() as u64).min(lines);
        let skipped = self.latest.len() - usize::try_from(held).unwrap_or(usize::MAX);
        let births = self
            .latest
            .iter()
            .skip(skipped)
            .zip(lines - held..)
            .filter(|(born, _)| **born)
            .map(|(_, offset)| offset)
            .collect();
        self.taken = self.counted;
        BirthChunk { lines, births }
    }

    /// Takes `shared` (every replica's handed-over lines) as this count, followed by
    /// `pending` (chunks taken here and not yet in `shared`) and the lines counted here
    /// since the last [`Births::take`], keeping the latest `lines`.
    pub(super) fn rebase(&mut self, shared: &SharedBirths, pending: &[BirthChunk], lines: usize) {
        let own = self.take();
        let mut rebased = Births::default();
        let keep = lines as u64;
        let append = |rebased: &mut Births, count: u64, births: &[u64]| {
            // Only the latest `keep` lines of a chunk can stay in the ring.
            let from = count.saturating_sub(keep);
            let mut next = births.iter().copied().filter(|&b| b >= from).peekable();
            for position in from..count {
                let born = next.peek() == Some(&position);
                if born {
                    next.next();
                }
                rebased.push(born, lines);
            }
            rebased.counted += count;
        };
        append(&mut rebased, shared.lines, &shared.births);
        for chunk in pending.iter().chain(std::iter::once(&own)) {
            append(&mut rebased, chunk.lines, &chunk.births);
        }
        // What is pending or was counted here goes to the shared count with the next
        // hand-over, as before: only the shared lines are taken.
        rebased.taken = shared.lines;
        let pending_lines: u64 = pending.iter().map(|c| c.lines).sum();
        rebased.taken += pending_lines;
        *self = rebased;
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

    fn count(births: &mut Births, pattern: &[bool], lines: usize) {
        for &born in pattern {
            births.record(born, lines);
        }
    }

    #[test]
    fn a_hand_over_lists_the_lines_counted_since_the_last() {
        let mut births = Births::default();
        count(&mut births, &[true, false, true], 10);
        assert_eq!(
            births.take(),
            BirthChunk {
                lines: 3,
                births: vec![0, 2]
            }
        );
        count(&mut births, &[false, false, true, false], 10);
        assert_eq!(
            births.take(),
            BirthChunk {
                lines: 4,
                births: vec![2]
            }
        );
        assert_eq!(births.take(), BirthChunk::default(), "nothing new");
        // More lines than the ring holds: the older ones' births are not listed (they
        // are past every count of the latest 4 lines), their lines are.
        count(&mut births, &[true, false, false, true, false, true], 4);
        assert_eq!(
            births.take(),
            BirthChunk {
                lines: 6,
                births: vec![3, 5]
            }
        );
    }

    #[test]
    fn replicas_taking_turns_through_the_shared_count_count_as_one_stream() {
        // One stream of 25 lines, scored by one scorer, and by two taking turns in
        // chunks that hand their lines over to a shared count and take it back before
        // scoring, as the workers do through the database.
        let stream: Vec<bool> = (0..25).map(|i| i % 7 == 3 || i == 20).collect();
        let lines = 8;
        let mut one = Births::default();
        count(&mut one, &stream, lines);

        let mut shared = SharedBirths::default();
        let mut replicas = [Births::default(), Births::default()];
        for (turn, chunk) in stream.chunks(4).enumerate() {
            let replica = &mut replicas[turn % 2];
            replica.rebase(&shared, &[], lines);
            count(replica, chunk, lines);
            let handed = replica.take();
            shared
                .births
                .extend(handed.births.iter().map(|b| shared.lines + b));
            shared.lines += handed.lines;
            assert_eq!(
                replica.settled(lines, 0.5),
                one_after(&stream[..usize::try_from(shared.lines).unwrap()], lines),
                "turn {turn}"
            );
        }
        let mut last = Births::default();
        last.rebase(&shared, &[], lines);
        assert_eq!(last.latest, one.latest);
        assert_eq!(last.settled(lines, 0.5), one.settled(lines, 0.5));
        assert_eq!(last.counted, one.counted);
    }

    fn one_after(stream: &[bool], lines: usize) -> f32 {
        let mut births = Births::default();
        count(&mut births, stream, lines);
        births.settled(lines, 0.5)
    }

    #[test]
    fn lines_not_yet_handed_over_stay_counted_after_a_rebase() {
        let lines = 6;
        let shared = SharedBirths {
            lines: 100,
            births: vec![97],
        };
        let mut births = Births::default();
        count(&mut births, &[true, false], lines);
        let pending = births.take();
        count(&mut births, &[false, true], lines);
        births.rebase(&shared, std::slice::from_ref(&pending), lines);
        // The shared latest lines 96..100 (a birth at 97), then the pending chunk, then
        // the two lines counted since: six in all.
        assert_eq!(
            births.latest,
            VecDeque::from(vec![false, false, true, false, false, true])
        );
        assert_eq!(births.counted, 104);
        // Only the lines counted since the last take are handed over next.
        assert_eq!(
            births.take(),
            BirthChunk {
                lines: 2,
                births: vec![1]
            }
        );
    }
}
