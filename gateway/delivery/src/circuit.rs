//! A per-target circuit breaker. After `threshold` consecutive failed
//! attempts the circuit opens and no request is sent for `open_for`; then
//! one trial request is let through (half-open): its success closes the
//! circuit, its failure opens it again. Time is passed in, so the state
//! machine is tested without sleeping.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    /// The value of the circuit-state gauge: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    open_for: Duration,
    failures: u32,
    opened_at: Option<Instant>,
    trial_in_flight: bool,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            failures: 0,
            opened_at: None,
            trial_in_flight: false,
        }
    }

    pub fn state(&self, now: Instant) -> CircuitState {
        match self.opened_at {
            None => CircuitState::Closed,
            Some(at) if now.duration_since(at) < self.open_for => CircuitState::Open,
            Some(_) => CircuitState::HalfOpen,
        }
    }

    /// How many requests may start now: `capacity` when closed, one trial
    /// when half-open and none is out, else none.
    pub fn permits(&mut self, now: Instant, capacity: usize) -> usize {
        match self.state(now) {
            CircuitState::Closed => capacity,
            CircuitState::Open => 0,
            CircuitState::HalfOpen if self.trial_in_flight || capacity == 0 => 0,
            CircuitState::HalfOpen => {
                self.trial_in_flight = true;
                1
            }
        }
    }

    /// When an open circuit lets a trial through.
    pub fn reopens_at(&self) -> Option<Instant> {
        self.opened_at.map(|at| at + self.open_for)
    }

    /// A request that was let through while half-open was not sent after
    /// all (nothing to deliver).
    pub fn trial_unused(&mut self) {
        self.trial_in_flight = false;
    }

    pub fn on_success(&mut self) {
        self.failures = 0;
        self.opened_at = None;
        self.trial_in_flight = false;
    }

    pub fn on_failure(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let half_open = self.state(now) == CircuitState::HalfOpen;
        if half_open || self.failures >= self.threshold {
            self.opened_at = Some(now);
        }
        self.trial_in_flight = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_lets_one_trial_through() {
        let start = Instant::now();
        let mut circuit = CircuitBreaker::new(3, Duration::from_secs(10));
        assert_eq!(circuit.permits(start, 4), 4);
        circuit.on_failure(start);
        circuit.on_failure(start);
        assert_eq!(circuit.state(start), CircuitState::Closed);
        circuit.on_failure(start);
        assert_eq!(circuit.state(start), CircuitState::Open);
        assert_eq!(circuit.permits(start + Duration::from_secs(5), 4), 0);
        let later = start + Duration::from_secs(11);
        assert_eq!(circuit.state(later), CircuitState::HalfOpen);
        assert_eq!(circuit.permits(later, 4), 1);
        assert_eq!(circuit.permits(later, 4), 0, "one trial at a time");
        // The trial fails: open again for a full period.
        circuit.on_failure(later);
        assert_eq!(
            circuit.state(later + Duration::from_secs(5)),
            CircuitState::Open
        );
        let again = later + Duration::from_secs(11);
        assert_eq!(circuit.permits(again, 4), 1);
        circuit.on_success();
        assert_eq!(circuit.state(again), CircuitState::Closed);
        assert_eq!(circuit.permits(again, 4), 4);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let now = Instant::now();
        let mut circuit = CircuitBreaker::new(2, Duration::from_secs(1));
        circuit.on_failure(now);
        circuit.on_success();
        circuit.on_failure(now);
        assert_eq!(circuit.state(now), CircuitState::Closed);
    }
}
